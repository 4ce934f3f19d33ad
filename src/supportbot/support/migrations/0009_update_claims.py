# UpdateClaim: each Telegram update is claimed once, by (bot id, update id), before any work
# (webhook and polling alike); rows are pruned after Telegram's 24 h redelivery window.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("support", "0008_status_change_draft_answer"),
    ]

    operations = [
        migrations.CreateModel(
            name="UpdateClaim",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("bot_id", models.BigIntegerField(help_text="Telegram id of the bot the update was sent to")),
                ("update_id", models.BigIntegerField()),
                ("claimed_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("bot_id", "update_id"), name="one_claim_per_update"),
                ],
            },
        ),
    ]
