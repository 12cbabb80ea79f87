"""What the views of a web application call: each function takes and
returns plain data, ready to be sent as JSON."""

import uuid

from compat.contrib.abortable import ABORTED, AbortableAsyncResult

from celery_app import app
from tasks import export_table


def start_export(table, chunks=20):
    """Start an export; the id is chosen here so that it can be saved
    (with the user's request, say) before the task is sent."""
    task_id = str(uuid.uuid4())
    export_table.apply_async((table, chunks), task_id=task_id)
    return {"task_id": task_id}


def export_status(task_id):
    """What the progress bar polls."""
    result = AbortableAsyncResult(task_id, app=app)
    state = result.state
    body = {"task_id": task_id, "state": state, "done": result.ready()}
    if state in ("PROGRESS", ABORTED):
        body["progress"] = result.info
    elif state == "SUCCESS":
        body["result"] = result.result
    elif state == "FAILURE":
        body["error"] = repr(result.info)
    return body


def cancel_export(task_id):
    """The cancel button: the task stops at its next check."""
    AbortableAsyncResult(task_id, app=app).abort()
    return {"task_id": task_id, "aborting": True}
