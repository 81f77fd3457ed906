"""runs: whether a passed job published key/values for later jobs

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # runs stored before: those with a passed job whose attempt published values
    if op.get_bind().dialect.name == "postgresql":
        published = "attempts.result->'shared' IS NOT NULL"
    else:
        published = "json_extract(attempts.result, '$.shared') IS NOT NULL"
    op.execute(
        "UPDATE runs SET shared = TRUE WHERE id IN ("
        "SELECT jobs.run_id FROM jobs JOIN attempts ON attempts.id = jobs.current_attempt_id "
        f"WHERE jobs.state = 'passed' AND {published})"
    )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("shared")
