"""The event dispatcher (``python -m cardinsa_company.dispatcher``).

It follows every service's ``EventService.WatchEvents`` stream as a platform
service account and hands each batch of events to its sinks -- the webhook
deliveries (always) and a JetStream stream (when configured) -- then stores
how far each sink has taken each source's events (``company.event_cursors``),
so a restart resumes where the last committed batch ended (at least once).
Webhook deliveries are then made by its delivery workers.
"""

from typing import Final

from cardinsa_company.dispatcher_settings import DispatcherSettings

#: The settings this process reads (deployment checks look for it here).
SETTINGS_CLASS: Final = DispatcherSettings
