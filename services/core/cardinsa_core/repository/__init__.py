"""Core's tables (``models``), the few SQL statements that are not plain ORM
(``numbers``) and one module per aggregate (``policyholders``, ``products``,
``policies``, ``claims``, ``audit``): its row ⇄ domain mappers and its queries,
on the shapes of ``rows`` (find by id, list, children of a parent)."""
