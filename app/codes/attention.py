"""What needs the merchant's attention, in plain words: the dashboard's list (and the health page's).

Each item is a fact about the shop that stops codes from being issued, tracked or rewarded as the
merchant expects, with what to do about it. Cheap indexed counts only: the dashboard shows it on every
load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import IssuedCode, Program, ReconcileCursor, Shop


@dataclass(frozen=True)
class Attention:
    level: str  # critical, warning or info (the banner's tone)
    title: str
    text: str
    page: str | None = None  # the admin page that deals with it ("codes", "programs"), if any
    query: tuple[tuple[str, str], ...] = ()  # that page's filters


def failed_codes(session: Session, shop_id: int) -> int:
    """Codes that could not be issued (``failed``): counted from ``ix_issued_codes_shop_status``."""
    return session.scalar(select(func.count()).select_from(IssuedCode).where(
        IssuedCode.shop_id == shop_id, IssuedCode.status == "failed")) or 0


def attention(session: Session, shop: Shop, report: dict[str, Any] | None = None) -> list[Attention]:
    """The shop's problems, most serious first. ``report`` (``metrics.shop_metrics``) adds what its
    range knows: codes used twice, the store's code cap."""
    items: list[Attention] = []
    if shop.setup_error:
        items.append(Attention("critical", "Set-up has not finished",
                               f"{shop.setup_error}. OnceCode retries it by itself; if this stays, reinstall "
                               "the app."))
    failed = failed_codes(session, shop.id)
    if failed:
        items.append(Attention("critical", f"{failed:,} code{'s' if failed != 1 else ''} could not be issued",
                               "Each one says why. Fix the cause (often the program's settings), then retry it.",
                               page="codes", query=(("status", "failed"),)))
    if report and report["totals"].get("anomalies"):
        count = report["totals"]["anomalies"]
        items.append(Attention("critical", f"{count} code{'s' if count != 1 else ''} used on a second order",
                               "Shopify should allow each code once; the first order keeps the redemption. "
                               "Check the orders in your Shopify admin."))
    programs = {p.kind: p for p in session.scalars(select(Program).where(Program.shop_id == shop.id))}
    welcome, friend, reward = (programs.get(kind) for kind in ("welcome", "referral_friend", "referral_reward"))
    if welcome is not None and not welcome.active:
        items.append(Attention("info", "Welcome codes are off",
                               "New customers get no code. Turn the welcome program on to give each a code of "
                               "their own.", page="programs"))
    if reward is not None and friend is not None and reward.active != friend.active:
        off = "friend" if reward.active else "reward"
        items.append(Attention("warning", "The referral program is half on",
                               f"Its {off} side is off, so referral links hand out no friend codes. Turn both "
                               "referral programs on, or both off.", page="programs"))
    cursor = session.get(ReconcileCursor, shop.id)
    if cursor is not None and cursor.last_error:
        items.append(Attention("warning", "Checking paid orders is failing",
                               f"{cursor.last_error}. It is retried automatically; redemptions are recorded "
                               "once it works again."))
    warning = report and report.get("store", {}).get("warning")
    if warning:
        items.append(Attention("warning", "Your store is filling up with codes", warning))
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(items, key=lambda item: order[item.level])
