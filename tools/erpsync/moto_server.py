"""moto_server with two fixes of costs that grow with the data, and SQS FIFO semantics
and thread safety as AWS has them.

1. TransactWriteItems backs up the items it touches, not the tables.

moto (5.2) deep-copies every table a transaction names, once per item, to roll back on
failure: the cost grows with the table, so a long run (`make chaos` at N=5,000, ~25,000
items) spends seconds of CPU per transaction and moto, not the system under test, becomes
the bottleneck. DynamoDB's semantics are kept: all-or-nothing, the same errors. Here the
touched items are snapshotted first and put back if the transaction is cancelled.

2. ReceiveMessage checks each message's retention against the queue's retention period,
not against a fresh computation of every queue attribute (which counts every message in
the queue, three times) per message received.

3. ReceiveMessage keeps a FIFO message group to one consumer at a time, as SQS does
("messages that belong to the same message group are always processed one by one, in a
strict order"; SQS Developer Guide, "FIFO queue delivery logic"). moto 5.2 takes the set of
groups in flight once per call and keeps it through a long poll, and nothing serialises
concurrent calls (moto_server serves requests on threads), so a receive that began before
a group's message was handed out could hand out the next one: two workers on one order at
once (found by `make chaos`). It also let a later message of a group go out before an
earlier one whose visibility ran out a moment after. Here each pass over the queue runs
under one lock, recomputes what is in flight, and stops a group at its first message that
is not available. SendMessage, DeleteMessage and ChangeMessageVisibility take the same lock:
moto's DeleteMessage rebuilds the message list, which could drop a message sent meanwhile.

4. SQS sizes as AWS counts them. A queue created without `MaximumMessageSize` gets AWS's
default, 262,144 bytes (moto 5.2 gives 1 MiB), and a message's size counts its attributes'
names, types and values with the body ("SQS message attributes ... count towards the
maximum message size"; SQS Developer Guide, "Amazon SQS message attributes"); moto checks the
body alone. A message over the size is refused with SQS's own error.

5. IAM, when `INITIAL_NO_AUTH_ACTION_COUNT` is set (the local stack sets 0): moto then checks
every request's signature and its caller's identity policies, but it authorizes DynamoDB and
Secrets Manager calls against the resource "*" (and SQS calls that name a queue rather than
its URL), which no resource-scoped statement matches. Here those calls name the table (or
index), secret and queue ARNs AWS evaluates, each table of a batch or transaction checked,
and calls IAM has no action for are checked as AWS checks them: a transaction's items as
PutItem, UpdateItem, DeleteItem, ConditionCheckItem or GetItem, an SQS batch as the action
it batches. A refusal is worded as AWS words it (action and resource named), typed
`AccessDeniedException` on the JSON protocols as the SDKs expect, and logged. The stack's own
identity (access key `local`, the `erpsync-local` user, allowed everything) exists before the
first request, so the stack can create resources and roles; the functions and the operator
CLI run under roles it assumed.

6. IAM wildcards as IAM reads them: `*` any run of characters, `?` exactly one, everything
else literal ("IAM JSON policy elements: Resource"; a Secrets Manager ARN ends in `-??????`,
six random characters). moto 5.2 turns the pattern into a regular expression with only `*`
replaced, so `?` and `.` act as regex operators: `secret:erpsync/erp-api-key-??????` never
matched the secret it names.

Run as `python moto_server.py -H HOST -p PORT` (the same arguments as moto_server).
"""

import copy
import json
import re
import os
import sys
import threading
import time

import moto.dynamodb.models as models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.core.utils import unix_time
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sqs.responses import SQSResponse
from moto.iam.access_control import IAMPolicyStatement
from moto.server import main
from moto.sqs.exceptions import InvalidParameterValue
from moto.sqs.models import SQSBackend, _filter_message_attributes

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


_sqs_lock = threading.RLock()


def _serialised(method):
    def locked(*args, **kwargs):
        with _sqs_lock:
            return method(*args, **kwargs)

    return locked


def _receive_pass(backend, queue_name, queue, count, visibility_timeout, attribute_names):
    """One pass over the queue, under the lock: what this receive hands out."""
    fifo = queue.fifo_queue
    # A message whose visibility ran out is no longer in flight.
    for message in list(queue.pending_messages):
        if message.visible:
            queue.pending_messages.discard(message)
    blocked = (
        {m.group_id for m in queue.pending_messages if m.group_id is not None}
        if fifo
        else set()
    )
    result = []
    to_dead_letter = []
    for message in queue._messages:
        group = message.group_id if fifo else None
        if group is not None and group in blocked:
            continue
        if not message.visible or message.delayed:
            # In flight or not yet due: the rest of its group waits behind it.
            if group is not None:
                blocked.add(group)
            continue
        if (
            queue.dead_letter_queue is not None
            and queue.redrive_policy
            and message.approximate_receive_count
            >= queue.redrive_policy["maxReceiveCount"]
        ):
            to_dead_letter.append(message)
            continue
        if not backend.is_message_valid_based_on_retention_period(queue_name, message):
            continue
        queue.pending_messages.add(message)
        message.mark_received(visibility_timeout=visibility_timeout)
        handed = copy.deepcopy(message)
        _filter_message_attributes(handed, attribute_names)
        result.append(handed)
        if len(result) >= count:
            break
    for message in to_dead_letter:
        queue._messages.remove(message)
        queue.dead_letter_queue.add_message(message)
    return result


def receive_message(
    self,
    queue_name,
    count,
    wait_seconds_timeout,
    visibility_timeout,
    message_attribute_names=None,
):
    queue = self.get_queue(queue_name)
    attribute_names = message_attribute_names or []
    polling_end = unix_time() + wait_seconds_timeout
    while True:
        with _sqs_lock:
            result = _receive_pass(
                self, queue_name, queue, count, visibility_timeout, attribute_names
            )
        remaining = polling_end - unix_time()
        if result or remaining <= 0:
            return result
        # Wakes on a send; visible messages of a group in flight do not count, so wait a
        # little rather than spin on them.
        queue.wait_for_messages(min(1, remaining))
        time.sleep(min(0.05, max(remaining, 0)))


AWS_DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144
_create_queue = SQSBackend.create_queue
_send_message = SQSBackend.send_message


def create_queue(self, name, tags=None, **kwargs):
    if name not in self.queues:
        kwargs.setdefault("MaximumMessageSize", AWS_DEFAULT_MAXIMUM_MESSAGE_SIZE)
    return _create_queue(self, name, tags, **kwargs)


def _utf8_len(text):
    return len(text.encode("utf-8")) if isinstance(text, str) else len(text or b"")


def send_message(self, queue_name, message_body, message_attributes=None, *args, **kwargs):
    queue = self.get_queue(queue_name)
    size = _utf8_len(message_body)
    for name, value in (message_attributes or {}).items():
        size += _utf8_len(name) + _utf8_len(value.get("DataType", ""))
        size += _utf8_len(value.get("StringValue") or value.get("BinaryValue") or "")
    limit = int(queue.maximum_message_size)
    if size > limit:
        raise InvalidParameterValue(
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{limit} bytes."
        )
    return _send_message(self, queue_name, message_body, message_attributes, *args, **kwargs)


def _iam_match(pattern, string):
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.match(f"^{regex}$", string, flags=re.DOTALL)


IAMPolicyStatement._match = staticmethod(_iam_match)
models.copy = _CopyWithoutTables()
SQSBackend.create_queue = create_queue
SQSBackend.send_message = send_message
SQSBackend.receive_message = receive_message
for _name in (
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
):
    setattr(SQSBackend, _name, _serialised(getattr(SQSBackend, _name)))
SQSBackend.is_message_valid_based_on_retention_period = (
    is_message_valid_based_on_retention_period
)
DynamoDBBackend.transact_write_items = transact_write_items

ACCOUNT = "123456789012"
STACK_USER = "erpsync-local"
STACK_KEY = "local"


_authorize = BaseResponse._authenticate_and_authorize_normal_action
_denials_lock = threading.Lock()


def _authorize_as_aws(self, resource="*"):
    """moto's check, its refusal worded and shaped as AWS's: the action and the resource
    named, and for the JSON protocols the `__type` the SDKs read the error code from."""
    try:
        _authorize(self, resource)
    except AccessDeniedError as denied:
        action = denied.message.rsplit(" ", 1)[-1]
        message = (
            f"{denied.message} on resource: {resource} because no identity-based policy "
            f"allows the {action} action"
        )
        # Kept apart, so that a denial a caller swallowed (a fallback, a warning) is still
        # seen: the tests and the demo fail on any they did not ask for.
        print(f"IAM denied: {message}", file=sys.stderr, flush=True)
        denials = os.environ.get("ERPSYNC_IAM_DENIALS")
        if denials:
            with _denials_lock, open(denials, "a", encoding="utf-8") as log:
                log.write(message + "\n")
        content_type = self.headers.get("Content-Type") or ""
        if "json" in content_type:
            raise JsonRESTError("AccessDeniedException", message)
        raise


# IAM has no TransactWriteItems or TransactGetItems action: AWS authorizes each item's own.
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_checks(handler):
    """(action, resource ARN) pairs a DynamoDB request needs, as IAM evaluates them."""
    params = getattr(handler, "params", None) or {}
    prefix = f"arn:aws:dynamodb:{handler.region}:{handler.current_account}:table/"
    action = handler._get_action()
    checks = []
    if params.get("TableName"):
        name = params["TableName"]
        index = params.get("IndexName")
        checks.append((action, prefix + (f"{name}/index/{index}" if index else name)))
    for name in (params.get("RequestItems") or {}).keys():
        checks.append((action, prefix + name))
    for item in params.get("TransactItems") or []:
        for op_type, op in item.items():
            if isinstance(op, dict) and op.get("TableName"):
                checks.append((_TRANSACT_ACTIONS.get(op_type, action), prefix + op["TableName"]))
    return list(dict.fromkeys(checks)) or [(action, "*")]


def _dynamodb_authorize(self, resource="*"):
    for action, arn in _dynamodb_checks(self):
        self._get_action = lambda action=action: action
        try:
            BaseResponse._authenticate_and_authorize_normal_action(self, arn)
        finally:
            self.__dict__.pop("_get_action", None)


# SQS authorizes a batch call as the action it batches (there is no sqs:DeleteMessageBatch).
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


_sqs_resource = SQSResponse._determine_resource


def _sqs_queue_resource(self):
    """The queue's ARN, also for a queue named (GetQueueUrl) or not there: AWS evaluates the
    ARN the request names, existing or not."""
    name = self._get_param("QueueName") or self._get_queue_name()
    try:
        return self.sqs_backend.get_queue(name).queue_arn
    except Exception:
        if not name:
            return _sqs_resource(self)
        return f"arn:aws:sqs:{self.region}:{self.current_account}:{name}"


def _sqs_authorize(self, resource="*"):
    action = self._get_action()
    if action in _SQS_BATCH_ACTIONS:
        self._get_action = lambda: _SQS_BATCH_ACTIONS[action]
    try:
        BaseResponse._authenticate_and_authorize_normal_action(self, resource)
    finally:
        self.__dict__.pop("_get_action", None)


def _secret_resource(self):
    secret_id = self._get_param("SecretId") or self._get_param("Name")
    if not secret_id:
        return "*"
    if secret_id.startswith("arn:"):
        return secret_id
    try:
        return self.backend.describe_secret(secret_id).arn
    except Exception:
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"


def _create_stack_identity():
    """The stack's own user, allowed everything, with the fixed key the stack signs with."""
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT]["aws"]
    iam.create_user(region_name="us-east-1", user_name=STACK_USER)
    iam.put_user_policy(
        STACK_USER,
        "everything",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.get_user(STACK_USER).create_access_key(prefix="AKIA")
    key.access_key_id = STACK_KEY
    key.secret_access_key = STACK_KEY


BaseResponse._authenticate_and_authorize_normal_action = _authorize_as_aws
DynamoHandler._authenticate_and_authorize_normal_action = _dynamodb_authorize
SecretsManagerResponse._determine_resource = _secret_resource
SQSResponse._authenticate_and_authorize_normal_action = _sqs_authorize
SQSResponse._determine_resource = _sqs_queue_resource

if __name__ == "__main__":
    if os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT") is not None:
        _create_stack_identity()
    sys.exit(main())
