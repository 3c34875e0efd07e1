"""Operator commands: ``flask --app app <group> <command>`` (``make shell`` has the venv on PATH).

One module per command group, each as thin on the domain as the API's routes: parse the input (with
``app.params``, through ``common``), call ``app.codes``, ``app.lifecycle`` or ``app.inbox``, print.

    shops          installed shops, their set-up run again
    events         the webhook inbox
    data-requests  customers/data_request exports
    tokens         stored access tokens re-encrypted with a new key
    programs       a shop's discount programs
    codes          issued codes: list, show, issue by hand, revoke, retry
    metrics        what a shop's codes and referral loop earned
    reconcile      catch-up of the paid orders the webhooks missed
    referrals      referral links (``referrals``), friend code pools and landing caps (``referral_pools``),
                   referral settings and the referrals recorded (``referral_admin``)
"""

from __future__ import annotations

from flask import Flask

from app.cli import referral_admin as _referral_admin  # noqa: F401  (adds settings|list to the referrals group)
from app.cli import referral_pools as _referral_pools  # noqa: F401  (adds pool|top-up|pool-settings|caps)
from app.cli.codes import codes
from app.cli.common import refuse_undecodable_arguments
from app.cli.data_requests import data_requests
from app.cli.events import events
from app.cli.metrics import metrics_report
from app.cli.programs import programs
from app.cli.reconcile import reconcile
from app.cli.referrals import referrals_cli
from app.cli.shops import shops
from app.cli.tokens import tokens

# Every command group, each refusing arguments that are not UTF-8 (wrapped once, here at import).
COMMANDS = tuple(refuse_undecodable_arguments(command) for command in (
    metrics_report, shops, events, data_requests, tokens, programs, codes, reconcile, referrals_cli))


def register_cli(app: Flask) -> None:
    """Every command group on the app's ``flask`` command."""
    for command in COMMANDS:
        app.cli.add_command(command)
