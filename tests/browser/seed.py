"""The people and the canned replies of the browser tests' desk, written into the stack's own
database (created here, as `supportbot migrate` does) before `supportbot run` starts, so `run`
creates no admin of its own.

Run by tests/browser/conftest.py as ``python tests/browser/seed.py`` in the stack's environment
(SUPPORTBOT_DATA_DIR...); the passwords come in through the environment, never on a command line.
"""

from __future__ import annotations

import os

OLENA_TELEGRAM_ID = 555_001


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.web.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.core.management import call_command

    from supportbot.support.models import CannedReply, OperatorAccount

    call_command("migrate", interactive=False, verbosity=0)  # what `supportbot migrate` does
    User = get_user_model()
    # The person at the keyboard: operator in one tab, the customer in the sandbox chat in the
    # other (the sandbox page names its customer after the staff user who plays it).
    admin = User.objects.create_superuser("admin", email="", password=os.environ["BROWSER_ADMIN_PASSWORD"])
    admin.first_name = "Olena"
    admin.save(update_fields=["first_name"])
    # Her Telegram account, so what she writes in the operators' group (the sandbox's group page)
    # is her reply.
    OperatorAccount.objects.create(user=admin, telegram_user_id=OLENA_TELEGRAM_ID, telegram_username="olena_desk")
    # A second operator: staff with the support app's permissions, not a superuser.
    operator = User.objects.create_user("taras", password=os.environ["BROWSER_OPERATOR_PASSWORD"],
                                        first_name="Taras", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(content_type__app_label="support"))
    for language, text in (
        ("en", "Thank you for waiting! Your order has been found and it ships today."),
        ("uk", "Дякуємо за очікування! Ваше замовлення знайдено, сьогодні його відправимо."),
        ("ru", "Спасибо за ожидание! Ваш заказ найден, сегодня его отправим."),
    ):
        CannedReply.objects.create(shortcut="shipped", language=language, title="Order ships today", text=text)


if __name__ == "__main__":
    main()
