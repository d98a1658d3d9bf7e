"""Attack suite: invitations and e-mail changes as a way into accounts.

Replayed and expired links, guessed tokens (and tokens of another kind), a
low-privilege user or another company's admin inviting or re-inviting,
taking over someone's email, guessing the current password through
ChangeMyEmail, and telling accounts apart by the answers of the public
AcceptInvitation and ConfirmEmailChange or of ChangeMyEmail.
"""

from __future__ import annotations

import secrets
import statistics
import time

import grpc
from google.protobuf import field_mask_pb2
from hostile_attacks import AttackLog
from hostile_harness import Tenants
from sqlalchemy import text
from support.grpc_errors import error_info
from support.identity_harness import IdentityHarness, unique_email

from cardinsa.identity.v1 import (
    auth_service_pb2,
    me_service_pb2,
    me_service_pb2_grpc,
    resources_pb2,
    user_service_pb2,
)

PASSWORD = "an attacker's chosen passphrase 9"


def _me(identity: IdentityHarness) -> me_service_pb2_grpc.MeServiceStub:
    return me_service_pb2_grpc.MeServiceStub(identity.channel)


async def _answer(call: object) -> tuple[str, str, str]:
    """(code, reason, message) of a call's answer; OK for a success."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code().name, error_info(error).reason, error.details() or ""
    return "OK", "", ""


def _accept(identity: IdentityHarness, token: str, password: str = PASSWORD) -> object:
    return identity.auth.AcceptInvitation(
        auth_service_pb2.AcceptInvitationRequest(invitation_token=token, new_password=password)
    )


def _confirm(identity: IdentityHarness, token: str) -> object:
    return identity.auth.ConfirmEmailChange(
        auth_service_pb2.ConfirmEmailChangeRequest(email_change_token=token)
    )


async def _invite(identity: IdentityHarness, tenants: Tenants) -> tuple[str, str, str]:
    """An invitation in the victim's company: (user id, email, token)."""
    user = await identity.users.InviteUser(
        user_service_pb2.InviteUserRequest(user=resources_pb2.User(email=unique_email("inv"))),
        metadata=tenants.victim.bearer,
    )
    (mail,) = identity.notifier.messages_for(user.email, kind="invitation")
    return user.id, user.email, mail["token"]


async def _rows(identity: IdentityHarness) -> tuple[int, int, int]:
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as db:
        found = (
            await db.execute(
                text(
                    "SELECT (SELECT count(*) FROM identity.invitations WHERE use_time IS NULL),"
                    " (SELECT count(*) FROM identity.email_changes WHERE use_time IS NULL),"
                    " (SELECT count(*) FROM identity.audit_events)"
                )
            )
        ).one()
    return int(found[0]), int(found[1]), int(found[2])


async def test_attack_replay_expired_and_guessed_invitation_tokens(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    used_id, used_email, used = await _invite(identity, tenants)
    assert await _answer(_accept(identity, used)) == ("OK", "", "")
    expired_id, _, expired = await _invite(identity, tenants)
    async with identity.app.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as db:
        await db.execute(
            text(
                "UPDATE identity.invitations SET expire_time = now() - interval '1 second'"
                " WHERE user_id = :user_id"
            ),
            {"user_id": expired_id},
        )
    deleted_id, _, of_deleted = await _invite(identity, tenants)
    await identity.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(user_id=deleted_id), metadata=tenants.victim.bearer
    )
    with attacks.attempt(
        "take an invited account with a used, expired or guessed invitation link",
        "AcceptInvitation with a used token, an expired one, one of a deleted user, 200 "
        "random well-formed tokens, tokens of other kinds and malformed ones",
    ):
        before = await _rows(identity)
        guesses = [f"cdi_{secrets.token_urlsafe(32)}" for _ in range(200)]
        others = [
            "cdp_" + used[4:],  # the used token as a reset token
            "cde_" + used[4:],  # ... and as an e-mail change token
            used + "A",
            used[:-1],
            used.upper(),
            "",
            "cdi_" + "A" * 10_000,
        ]
        answers = {
            await _answer(_accept(identity, token))
            for token in [used, expired, of_deleted, *guesses, *others[:5], others[6]]
        }
        assert answers == {
            (
                "UNAUTHENTICATED",
                "INVALID_INVITATION_TOKEN",
                "the invitation token is not valid or has expired; ask for a new invitation",
            )
        }, answers
        # Nothing written by any of them (no token claimed, nothing audited).
        assert await _rows(identity) == before
        # An empty token is a missing field, as for every required field.
        assert (await _answer(_accept(identity, "")))[0] == "INVALID_ARGUMENT"
        # The account that accepted keeps the password it chose.
        assert (await identity.login(used_email, PASSWORD)).access_token
        assert (await _answer(_accept(identity, used, "the attacker's passphrase 77")))[
            0
        ] == "UNAUTHENTICATED"
        assert (await identity.login(used_email, PASSWORD)).access_token
    del used_id


async def test_attack_invite_or_reinvite_without_the_right(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    low = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    low_md = identity.bearer(await identity.token(low))
    victim_invited, _, _ = await _invite(identity, tenants)
    with attacks.attempt(
        "invite users without users.create or into another company",
        "InviteUser by a viewer; InviteUser naming another company by a company admin; "
        "ResendInvitation of another company's invited user (and of a made-up id)",
    ):
        email = unique_email("low-invite")
        code = await _answer(
            identity.users.InviteUser(
                user_service_pb2.InviteUserRequest(user=resources_pb2.User(email=email)),
                metadata=low_md,
            )
        )
        assert code[0] == "PERMISSION_DENIED", code
        cross = await _answer(
            identity.users.InviteUser(
                user_service_pb2.InviteUserRequest(
                    user=resources_pb2.User(email=email, company_id=tenants.victim.company_id)
                ),
                metadata=tenants.attacker.bearer,
            )
        )
        assert cross[:2] == ("PERMISSION_DENIED", "CROSS_COMPANY_DENIED"), cross
        assert identity.notifier.messages_for(email, kind="invitation") == []
        # Another company's invited user answers exactly like one that does not exist.
        answers = set()
        for user_id in (victim_invited, "00000000-0000-4000-8000-000000000000"):
            code, reason, message = await _answer(
                identity.users.ResendInvitation(
                    user_service_pb2.ResendInvitationRequest(user_id=user_id),
                    metadata=tenants.attacker.bearer,
                )
            )
            answers.add((code, reason, message.replace(user_id, "")))
        assert len(answers) == 1 and next(iter(answers))[0] == "NOT_FOUND", answers


async def test_attack_take_over_an_email_through_an_email_change(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    attacker = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    attacker_md = identity.bearer(await identity.token(attacker))
    victim = tenants.victim.user
    with attacks.attempt(
        "take over another account's email or address through an e-mail change",
        "ChangeMyEmail to the victim's address; UpdateUser of another company's user; "
        "the attacker's own confirmation token replayed; a change token as an invitation",
    ):
        # The victim's address: the same empty answer as a free one, no mail to it.
        taken = await _answer(
            _me(identity).ChangeMyEmail(
                me_service_pb2.ChangeMyEmailRequest(
                    current_password=attacker.password, new_email=victim.email
                ),
                metadata=attacker_md,
            )
        )
        free_address = unique_email("attacker-new")
        free = await _answer(
            _me(identity).ChangeMyEmail(
                me_service_pb2.ChangeMyEmailRequest(
                    current_password=attacker.password, new_email=free_address
                ),
                metadata=attacker_md,
            )
        )
        assert taken == free == ("OK", "", "")
        assert identity.notifier.messages_for(victim.email, kind="email_change") == []
        # Another company's user: NOT_FOUND, nothing pending for it.
        cross = await _answer(
            identity.users.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(id=victim.user_id, email=unique_email("steal")),
                    update_mask=field_mask_pb2.FieldMask(paths=["email"]),
                ),
                metadata=tenants.attacker.bearer,
            )
        )
        assert cross[0] == "NOT_FOUND", cross
        # The attacker's own token changes the attacker's email only, once.
        (mail,) = identity.notifier.messages_for(free_address, kind="email_change")
        assert await _answer(_confirm(identity, mail["token"])) == ("OK", "", "")
        replay = await _answer(_confirm(identity, mail["token"]))
        assert replay[:2] == ("UNAUTHENTICATED", "INVALID_EMAIL_CHANGE_TOKEN")
        # ... and is no invitation.
        assert (await _answer(_accept(identity, "cdi_" + mail["token"][4:])))[1] == (
            "INVALID_INVITATION_TOKEN"
        )
        assert (await identity.login(victim.email, victim.password)).access_token


async def test_attack_unknown_used_and_expired_change_tokens_answer_alike(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    user = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    md = identity.bearer(await identity.token(user))
    tokens = []
    for _ in range(2):
        address = unique_email("enum")
        await _me(identity).ChangeMyEmail(
            me_service_pb2.ChangeMyEmailRequest(current_password=user.password, new_email=address),
            metadata=md,
        )
        (mail,) = identity.notifier.messages_for(address, kind="email_change")
        tokens.append(mail["token"])
    superseded, used = tokens  # the second request voided the first
    assert await _answer(_confirm(identity, used)) == ("OK", "", "")
    with attacks.attempt(
        "tell e-mail change tokens apart by the answer",
        "ConfirmEmailChange with a used, a superseded, a made-up and a malformed token",
    ):
        answers = {
            await _answer(_confirm(identity, token))
            for token in (used, superseded, f"cde_{secrets.token_urlsafe(32)}", "cde_x")
        }
        assert answers == {
            (
                "UNAUTHENTICATED",
                "INVALID_EMAIL_CHANGE_TOKEN",
                "the e-mail change token is not valid or has expired; ask for the change again",
            )
        }, answers


async def test_attack_guess_the_current_password_through_change_my_email(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """A stolen access token does not let the thief guess the password without
    limit: ChangeMyEmail's failures count as failed logins."""
    user = await identity.create_user(tenants.attacker.admin, roles=["viewer"])
    md = identity.bearer(await identity.token(user))
    limit = identity.settings.login_max_failures_per_account
    with attacks.attempt(
        "brute-force the current password through ChangeMyEmail",
        f"{limit + 2} wrong current passwords with a valid access token",
    ):
        codes = []
        for attempt in range(limit + 2):
            code, reason, _ = await _answer(
                _me(identity).ChangeMyEmail(
                    me_service_pb2.ChangeMyEmailRequest(
                        current_password=f"guess number {attempt} of many",
                        new_email=unique_email("guess"),
                    ),
                    metadata=md,
                )
            )
            codes.append((code, reason))
        assert codes[0] == ("INVALID_ARGUMENT", "WRONG_CURRENT_PASSWORD"), codes
        assert codes[-1] == ("RESOURCE_EXHAUSTED", "TOO_MANY_LOGIN_ATTEMPTS"), codes
        # The correct password is refused too while the account is locked.
        locked = await _answer(
            _me(identity).ChangeMyEmail(
                me_service_pb2.ChangeMyEmailRequest(
                    current_password=user.password, new_email=unique_email("late")
                ),
                metadata=md,
            )
        )
        assert locked[0] == "RESOURCE_EXHAUSTED", locked


async def test_attack_tell_invitation_tokens_apart_by_timing(
    identity: IdentityHarness, tenants: Tenants, attacks: AttackLog
) -> None:
    """A used, an expired-by-use (resent) and a made-up token cost the same: one
    indexed read and no hashing, so their answer times do not tell them apart."""
    _, _, used = await _invite(identity, tenants)
    assert await _answer(_accept(identity, used)) == ("OK", "", "")
    resent_id, resent_email, superseded = await _invite(identity, tenants)
    await identity.users.ResendInvitation(
        user_service_pb2.ResendInvitationRequest(user_id=resent_id),
        metadata=tenants.victim.bearer,
    )
    assert len(identity.notifier.messages_for(resent_email, kind="invitation")) == 2
    with attacks.attempt(
        "tell invitation tokens apart by timing",
        "AcceptInvitation 15 times each with a used, a superseded and a made-up token",
    ):
        medians = {}
        for name, token in (
            ("used", used),
            ("superseded", superseded),
            ("unknown", f"cdi_{secrets.token_urlsafe(32)}"),
        ):
            times = []
            for _ in range(15):
                started = time.perf_counter()
                answer = await _answer(_accept(identity, token))
                times.append(time.perf_counter() - started)
                assert answer[1] == "INVALID_INVITATION_TOKEN"
            medians[name] = statistics.median(times)
        # Each is a read or two over the local connection; none hashes a password.
        assert max(medians.values()) < 0.08, medians
        assert max(medians.values()) - min(medians.values()) < 0.04, medians
