"""DAGs the Tessera Airflow adapter's tests run."""
from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

common = dict(start_date=datetime(2024, 1, 1), schedule=None, catchup=False)

with DAG("tessera_chain", **common):
    a = BashOperator(task_id="extract", bash_command='echo "extract {{ dag_run.conf.get(\'count\', 0) }}"')
    b = BashOperator(task_id="transform", bash_command="echo transform")
    c = BashOperator(task_id="load", bash_command="echo load")
    a >> b >> c

with DAG("tessera_flaky", **common):
    a = BashOperator(task_id="first", bash_command="echo first")
    b = BashOperator(
        task_id="flaky",
        bash_command='echo "try {{ ti.try_number }}"; [ {{ ti.try_number }} -ge 2 ] || { echo "failing on purpose" >&2; exit 3; }',
    )
    c = BashOperator(task_id="after", bash_command="echo after")
    a >> b >> c

with DAG("tessera_slow", **common):
    BashOperator(task_id="sleep", bash_command="sleep 300")
