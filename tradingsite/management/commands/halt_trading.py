from django.core.management.base import BaseCommand

from tradingsite.services import trading_halt


class Command(BaseCommand):
    help = "Halt new entries (open positions stay supervised and can still be closed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", required=True)
        parser.add_argument("--actor", default="operator (cli)")

    def handle(self, *args, reason: str, actor: str, **opts) -> None:
        state = trading_halt(reason=reason, actor=actor)
        self.stdout.write(f"trading halted at {state.halted_at:%Y-%m-%d %H:%M:%S %Z}: {reason}")
