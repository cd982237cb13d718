from django.core.management.base import BaseCommand

from tradingsite.services import trading_resume


class Command(BaseCommand):
    help = "Resume new entries after a halt."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--actor", default="operator (cli)")

    def handle(self, *args, actor: str, **opts) -> None:
        trading_resume(actor=actor)
        self.stdout.write("trading resumed")
