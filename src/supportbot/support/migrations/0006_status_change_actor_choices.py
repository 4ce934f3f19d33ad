# TicketStatusChange.actor: the existing free-text values become choices (no data changes).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("support", "0005_delivery_retries"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ticketstatuschange",
            name="actor",
            field=models.CharField(
                choices=[("customer", "Customer"), ("bot", "Bot"), ("operator", "Operator"), ("system", "System")],
                help_text="Who changed the status",
                max_length=32,
            ),
        ),
    ]
