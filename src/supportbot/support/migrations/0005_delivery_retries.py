from django.db import migrations, models


def fail_unclaimed_sending(apps, schema_editor):
    """Before this version the bot's own answers were written "sending", sent directly and
    marked sent; a failed send left them "sending" with no claim, for ever. They are weeks
    old by now: record them as failed rather than let the delivery path send them late."""
    Message = apps.get_model("support", "Message")
    Message.objects.filter(delivery_status="sending", delivery_claimed_at__isnull=True).update(
        delivery_status="failed", delivery_error="the send failed before this version's delivery path; not re-sent")


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0004_outbox_claim_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="delivery_not_before",
            field=models.DateTimeField(blank=True, help_text="A retried message is not sent again before this time", null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="delivery_parts_sent",
            field=models.PositiveSmallIntegerField(default=0, help_text="Parts of a long text (over 4,096 characters) already delivered"),
        ),
        migrations.AddField(
            model_name="message",
            name="quote_reply",
            field=models.BooleanField(default=False, help_text="Sent in Telegram as a reply quoting the customer's message"),
        ),
        migrations.RunPython(fail_unclaimed_sending, migrations.RunPython.noop),
    ]
