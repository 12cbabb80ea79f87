"""Long exports that the web pages start, follow and abort."""

import os
import time

from compat import shared_task
from compat.contrib.abortable import ABORTED, AbortableTask
from compat.exceptions import Ignore

#: How long fetching one chunk of rows takes, in seconds.
CHUNK_SECONDS = float(os.environ.get("EXPORTS_CHUNK_SECONDS", "0.2"))
ROWS_PER_CHUNK = 100


def fetch_chunk(table, index):
    """Stand-in for a slow database query."""
    time.sleep(CHUNK_SECONDS)
    start = index * ROWS_PER_CHUNK
    return [f"{table}:{n}" for n in range(start, start + ROWS_PER_CHUNK)]


@shared_task(bind=True, base=AbortableTask)
def export_table(self, table, chunks):
    """Export ``chunks`` chunks of ``table``, reporting progress after each."""
    rows = 0
    for index in range(chunks):
        if self.is_aborted():
            self.update_state(
                state=ABORTED,
                meta={"current": index, "total": chunks, "rows": rows},
            )
            # Ends the task without a result, so that ABORTED stays.
            raise Ignore()
        rows += len(fetch_chunk(table, index))
        self.update_state(
            state="PROGRESS",
            meta={"current": index + 1, "total": chunks, "rows": rows},
        )
    return {"table": table, "rows": rows, "task_id": self.request.id}
