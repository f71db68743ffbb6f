"""moto_server with two fixes of costs that grow with the data, semantics unchanged.

1. TransactWriteItems backs up the items it touches, not the tables.

moto (5.2) deep-copies every table a transaction names, once per item, to roll back on
failure: the cost grows with the table, so a long run (`make chaos` at N=5,000, ~25,000
items) spends seconds of CPU per transaction and moto, not the system under test, becomes
the bottleneck. DynamoDB's semantics are kept: all-or-nothing, the same errors. Here the
touched items are snapshotted first and put back if the transaction is cancelled.

2. ReceiveMessage checks each message's retention against the queue's retention period,
not against a fresh computation of every queue attribute (which counts every message in
the queue, three times) per message received.

Run as `python moto_server.py -H HOST -p PORT` (the same arguments as moto_server).
"""

import copy
import sys
import threading

import moto.dynamodb.models as models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.core.utils import unix_time
from moto.server import main
from moto.sqs.models import SQSBackend

_local = threading.local()
_transact_write_items = DynamoDBBackend.transact_write_items


class _CopyWithoutTables:
    """moto's `copy` inside a transaction: tables are not copied (we snapshot items)."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if getattr(_local, "in_transaction", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _key_of(table, op_type, op):
    if op_type == "Put":
        attrs = op.get("Item") or {}
        key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs.get(table.range_key_attr)
    else:
        key = op.get("Key")
    if not key or any(value is None for value in key.values()):
        return None
    return key


def transact_write_items(self, transact_items):
    snapshots = []
    for item in transact_items:
        for op_type, op in item.items():
            table_name = op.get("TableName") if isinstance(op, dict) else None
            table = self.tables.get(table_name) if table_name else None
            key = _key_of(table, op_type, op) if table is not None else None
            if key is None:
                # Something moto will refuse anyway: let it, with its own full backup.
                return _transact_write_items(self, transact_items)
            try:
                current = self.get_item(table_name, key)
            except Exception:
                return _transact_write_items(self, transact_items)
            before = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            snapshots.append((table_name, key, before))
    _local.in_transaction = True
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, before in reversed(snapshots):
            if before is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before)
        raise
    finally:
        _local.in_transaction = False


def is_message_valid_based_on_retention_period(self, queue_name, message):
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()


models.copy = _CopyWithoutTables()
SQSBackend.is_message_valid_based_on_retention_period = (
    is_message_valid_based_on_retention_period
)
DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    sys.exit(main())
