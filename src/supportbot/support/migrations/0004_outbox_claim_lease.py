"""Outbox claims get a time, so a reply left "sending" by a crashed bot can be recovered."""

from django.db import migrations, models
from django.utils import timezone


def start_lease_for_rows_being_sent(apps, schema_editor):
    # Operator replies claimed before this migration have no claim time. Give them one
    # now: a bot still running the old code may be sending them this very moment, so
    # their lease starts here instead of their being taken as abandoned at once.
    Message = apps.get_model("support", "Message")
    Message.objects.filter(source="operator", delivery_status="sending", delivery_claimed_at=None).update(
        delivery_claimed_at=timezone.now()
    )


class Migration(migrations.Migration):

    dependencies = [
        ('support', '0003_llm_answer_details'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='delivery_claimed_at',
            field=models.DateTimeField(blank=True, help_text='When a bot worker last claimed this reply for sending (outbox)', null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='delivery_interrupted',
            field=models.BooleanField(default=False, help_text='A bot stopped while sending this reply, so it is unknown whether Telegram got that attempt: it was re-sent once and may have arrived twice (or, interrupted twice, given up)'),
        ),
        migrations.RunPython(start_lease_for_rows_being_sent, migrations.RunPython.noop),
    ]
