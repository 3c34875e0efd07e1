"""code tallies: the metrics' figures per day, program, currency and detail, kept by triggers (PostgreSQL)

``code_tally_changes`` receives, from statement-level triggers on ``issued_codes``, ``paid_orders``,
``referrals``, ``pool_codes`` and ``referral_click_hours``, what each statement changed in the figures, per quarter hour (UTC); ``app.codes.tallies`` folds them
into ``code_tallies``, per day of the shop's time zone (``shops.tally_zone``). A quarter hour, because
every time zone's midnight falls on one. ``oncecode_tally_replay(shop)`` appends the figures of all a
shop's rows, which is how a shop's tallies are (re)built for a new time zone. The same SQL, written
once below, serves the triggers (this statement's new rows less its old ones) and the replay (all the
shop's rows).

The index on (shop, order) finds a changed code's sibling codes: an order counts once per program;
the one on referrals (shop, order time) reads the top advocates of a range.

SQLite (development) has the tables but no triggers: the metrics read the codes there.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 18:10:00
"""

# ruff: noqa: S608 -- the SQL below is put together from this file's own literals, never from input
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CODE_FIGURES = ["codes_issued", "redeemed_of_issued", "codes_redeemed", "discounts_known", "discount", "orders",
                "revenue"]
ORDER_FIGURES = ["orders", "revenue", "orders_without_codes", "revenue_without_codes"]
FRIEND_FIGURES = ["friend_code_orders", "friend_code_revenue", "friend_discounts_known", "friend_discount"]
LOOP_FIGURES = ["friend_orders", "referred_revenue", "rewarded_revenue", "rewards_pending", "rewards_issued",
                "rewards_voided", "rewards_blocked"]
FIGURES = [*CODE_FIGURES, "orders_without_codes", "revenue_without_codes", *FRIEND_FIGURES, "link_clicks",
           "unique_visitors", "friend_codes", *LOOP_FIGURES]
MONEY = {"discount", "revenue", "revenue_without_codes", "friend_code_revenue", "friend_discount", "referred_revenue",
         "rewarded_revenue"}
KEY = ["shop_id", "at", "program_id", "currency", "detail"]
NONE = "(SELECT * FROM {table} WHERE false)"


def bucket(column: str) -> str:
    return f"date_bin('15 minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def part(key: list[str], figures: dict[str, str], source: str) -> str:
    """One SELECT of changes: the key's expressions (``KEY``'s order), each figure's expression (the
    others 0), from ``source``."""
    columns = [f"{expression} AS {name}" for name, expression in zip(KEY, key, strict=True)]
    columns += [f"{figures.get(name, '0')} AS {name}" for name in FIGURES]
    return f"SELECT {', '.join(columns)}\nFROM {source}"


def changed(new: str, old: str) -> str:
    """The statement's rows with their sign: +1 the new versions, -1 the old ones."""
    return f"(SELECT 1 AS sign, n.* FROM {new} AS n UNION ALL SELECT -1 AS sign, o.* FROM {old} AS o) AS changed"


def append_changes(changes: str, figures: list[str]) -> str:
    """INSERT the sums of ``changes`` (``part``s) per quarter hour, shop, program, currency and detail,
    leaving out groups where nothing changed."""
    return (f"INSERT INTO code_tally_changes ({', '.join(KEY)}, {', '.join(FIGURES)})\n"
            f"SELECT {', '.join(KEY)}, {', '.join(f'sum({f})' for f in FIGURES)}\n"
            f"FROM ({changes}) AS changes\n"
            f"GROUP BY {', '.join(KEY)}\n"
            f"HAVING {' OR '.join(f'sum({f}) <> 0' for f in figures)}")


def code_changes(new: str, old: str) -> str:
    """What the codes in ``new`` add and those in ``old`` take away.

    A code counts on the day it was issued (unless it failed; ``redeemed_of_issued`` once it is
    redeemed) and on the day it was redeemed (with its discount). An order counts once per program:
    with its program's lowest-id redeemed code of that order, as the table is now, and as it was before
    this statement: the table's rows, less the new rows, plus the old ones, summed per row version (a
    hash aggregate: a join of the table with the transition table, which has no statistics, can be
    planned as a nested loop that a bulk insert makes quadratic). Reconciliation redeems an order's
    codes under the order's lock (``order_changes.lock_order``), so no other statement changes them
    meanwhile.
    """
    used = "redeemed_at IS NOT NULL AND order_id IS NOT NULL"
    version = "id, shop_id, program_id, order_id, redeemed_at, currency, order_total"
    issued_key = ["shop_id", bucket("issued_at"), "program_id", "''", "''"]
    redeemed_key = ["shop_id", bucket("redeemed_at"), "program_id", "coalesce(currency, '')", "''"]
    counted = "(SELECT DISTINCT ON (shop_id, program_id, order_id) * FROM {rows} " \
              "ORDER BY shop_id, program_id, order_id, id) AS {name}"
    parts = [
        part(issued_key, {"codes_issued": "sign * (status <> 'failed')::int",
                          "redeemed_of_issued": "sign * (status <> 'failed' AND redeemed_at IS NOT NULL)::int"},
             "changed"),
        part(redeemed_key, {"codes_redeemed": "sign", "discounts_known": "sign * (discount_amount IS NOT NULL)::int",
                            "discount": "sign * coalesce(discount_amount, 0)"},
             "changed WHERE redeemed_at IS NOT NULL"),
        part(redeemed_key, {"orders": "1", "revenue": "coalesce(order_total, 0)"},
             counted.format(rows="now_used", name="now_counted")),
        part(redeemed_key, {"orders": "-1", "revenue": "-coalesce(order_total, 0)"},
             counted.format(rows="before", name="was_counted")),
    ]
    return f"""
WITH changed AS (
    SELECT 1 AS sign, n.* FROM {new} AS n
    UNION ALL
    SELECT -1 AS sign, o.* FROM {old} AS o
), touched AS (
    SELECT DISTINCT shop_id, program_id, order_id FROM changed WHERE order_id IS NOT NULL
), now_used AS (
    SELECT c.* FROM touched AS t JOIN issued_codes AS c
        ON c.shop_id = t.shop_id AND c.order_id = t.order_id AND c.program_id = t.program_id
    WHERE c.redeemed_at IS NOT NULL
), before AS (
    SELECT {version} FROM (
        SELECT 1 AS present, {version} FROM now_used
        UNION ALL
        SELECT -sign, {version} FROM changed WHERE {used}
    ) AS versions
    GROUP BY {version}
    HAVING sum(present) > 0
)
{' UNION ALL '.join(parts)}"""


def order_changes(new: str, old: str) -> str:
    """What the paid orders in ``new`` add and those in ``old`` take away: program 0 holds the shop's
    orders, with our codes (``orders``, ``revenue``) or without (``..._without_codes``)."""
    with_codes = "our_codes > 0"
    return part(["shop_id", bucket("paid_at"), "0", "currency", "''"],
                {"orders": f"sign * ({with_codes})::int",
                 "revenue": f"CASE WHEN {with_codes} THEN sign * coalesce(total_price, 0) ELSE 0 END",
                 "orders_without_codes": f"sign * (({with_codes}) IS NOT TRUE)::int",
                 "revenue_without_codes": f"CASE WHEN {with_codes} THEN 0 ELSE sign * coalesce(total_price, 0) END"},
                changed(new, old))


def referral_changes(new: str, old: str) -> str:
    """What the referrals in ``new`` add and those in ``old`` take away, on the day of their order: the
    loop's figures for the referral's (reward) program, by status, ``detail`` the reason of a voided or
    blocked one; and the friend code's order, revenue and discount for the friend code's program."""
    status = "sign * (status = '{}')::int"
    return " UNION ALL ".join([
        part(["shop_id", bucket("ordered_at"), "coalesce(program_id, 0)", "currency", "coalesce(reason, '')"],
             {"friend_orders": "sign", "referred_revenue": "sign * order_total",
              "rewarded_revenue": "CASE WHEN status = 'rewarded' THEN sign * order_total ELSE 0 END",
              "rewards_pending": status.format("held"), "rewards_issued": status.format("rewarded"),
              "rewards_voided": status.format("voided"), "rewards_blocked": status.format("blocked")},
             changed(new, old)),
        part(["changed.shop_id", bucket("changed.ordered_at"), "pool_codes.program_id", "changed.currency", "''"],
             {"friend_code_orders": "changed.sign", "friend_code_revenue": "changed.sign * changed.order_total",
              "friend_discounts_known": "changed.sign * (changed.discount_amount IS NOT NULL)::int",
              "friend_discount": "changed.sign * coalesce(changed.discount_amount, 0)"},
             f"{changed(new, old)} JOIN pool_codes ON pool_codes.id = changed.pool_code_id "
             "AND pool_codes.shop_id = changed.shop_id"),
    ])


def friend_code_changes(new: str, old: str) -> str:
    """The friend codes a referral link's landing handed out, on the day it did, per program."""
    return part(["shop_id", bucket("handed_out_at"), "program_id", "''", "''"], {"friend_codes": "sign"},
                f"{changed(new, old)} WHERE handed_out_at IS NOT NULL AND link_id IS NOT NULL")


def click_changes(new: str, old: str) -> str:
    """The clicks on referral links and their new visitors, by the hour they were counted in."""
    return part(["shop_id", bucket("hour"), "0", "''", "''"],
                {"link_clicks": "sign * clicks", "unique_visitors": "sign * visitors"}, changed(new, old))


# table, trigger function, changes, the figures they touch
TRIGGERS = [
    ("issued_codes", "oncecode_tally_issued_codes", code_changes, CODE_FIGURES),
    ("paid_orders", "oncecode_tally_paid_orders", order_changes, ORDER_FIGURES),
    ("referrals", "oncecode_tally_referrals", referral_changes, [*LOOP_FIGURES, *FRIEND_FIGURES]),
    ("pool_codes", "oncecode_tally_pool_codes", friend_code_changes, ["friend_codes"]),
    ("referral_click_hours", "oncecode_tally_click_hours", click_changes, ["link_clicks", "unique_visitors"]),
]
EVENTS = {
    "insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "update": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
}


def trigger_function(name: str, table: str, changes, figures: list[str]) -> str:  # type: ignore[no-untyped-def]
    none = NONE.format(table=table)
    body = {op_: append_changes(changes(new, old), figures)
            for op_, new, old in (("INSERT", "new_rows", none), ("UPDATE", "new_rows", "old_rows"),
                                  ("DELETE", none, "old_rows"))}
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {body['INSERT']};
    ELSIF TG_OP = 'UPDATE' THEN
        {body['UPDATE']};
    ELSE
        {body['DELETE']};
    END IF;
    RETURN NULL;
END
$body$"""


def replay_function() -> str:
    statements = [append_changes(changes(f"(SELECT * FROM {table} WHERE shop_id = shop)", NONE.format(table=table)),
                                 figures)
                  for table, _, changes, figures in TRIGGERS]
    return f"""
CREATE FUNCTION oncecode_tally_replay(shop integer) RETURNS void LANGUAGE plpgsql AS $body$
BEGIN
    {';'.join(statements)};
END
$body$"""


def figure_columns() -> list[sa.Column]:
    return [sa.Column(name, sa.Numeric(precision=16, scale=2) if name in MONEY else sa.Integer(),
                      server_default='0', nullable=False) for name in FIGURES]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index('ix_issued_codes_shop_order', 'issued_codes', ['shop_id', 'order_id'], unique=False,
                        postgresql_where=sa.text('order_id IS NOT NULL'), sqlite_where=sa.text('order_id IS NOT NULL'),
                        postgresql_concurrently=True)
        op.create_index('ix_referrals_shop_ordered', 'referrals', ['shop_id', 'ordered_at'], unique=False,
                        postgresql_concurrently=True)

    big_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table('code_tallies',
    sa.Column('id', big_id, nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('detail', sa.String(length=32), nullable=False),
    *figure_columns(),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_code_tallies_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_tallies')),
    sa.UniqueConstraint('shop_id', 'day', 'program_id', 'currency', 'detail',
                        name=op.f('uq_code_tallies_shop_id_day_program_id_currency_detail'))
    )
    op.create_table('code_tally_changes',
    sa.Column('id', big_id, nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('detail', sa.String(length=32), nullable=False),
    *figure_columns(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_tally_changes')),
    )
    with op.batch_alter_table('code_tally_changes', schema=None) as batch_op:
        batch_op.create_index('ix_code_tally_changes_shop_at', ['shop_id', 'at'], unique=False)
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tally_zone', sa.String(length=64), nullable=True))

    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, function, changes, figures in TRIGGERS:
        op.execute(trigger_function(function, table, changes, figures))
        for event, (verb, referencing) in EVENTS.items():
            op.execute(f"CREATE TRIGGER tally_{table}_{event} AFTER {verb} ON {table} {referencing} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute(replay_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP FUNCTION oncecode_tally_replay(integer)")
        for table, function, _, _ in TRIGGERS:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER tally_{table}_{event} ON {table}")
            op.execute(f"DROP FUNCTION {function}()")
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_column('tally_zone')
    with op.batch_alter_table('code_tally_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_code_tally_changes_shop_at')
    op.drop_table('code_tally_changes')
    op.drop_table('code_tallies')
    with op.get_context().autocommit_block():
        op.drop_index('ix_referrals_shop_ordered', table_name='referrals', postgresql_concurrently=True)
        op.drop_index('ix_issued_codes_shop_order', table_name='issued_codes', postgresql_concurrently=True)
