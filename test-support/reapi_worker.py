"""A minimal REAPI worker for tests: speaks BuildGrid's Bots API (remoteworkers v1test2).

Test scaffolding only (no production worker, buildbox-worker, installs on this machine). It runs
with the Python of BuildGrid's venv, whose package ships the generated protocol modules.

    python reapi_worker.py --remote http://127.0.0.1:PORT [--instance NAME] [--bot-id ID]
                           [--property KEY=VALUE ...] [--work-dir DIR]

For every lease it is given it fetches the Action, its Command and its input root from the CAS,
lays the tree out in a fresh directory, runs the command there (argv, environment, working
directory as the Command says, nothing else inherited but PATH), uploads the declared outputs
that exist, stdout and stderr, and completes the lease with the ActionResult. Paths from the
Command and the Directory messages are checked: no absolute path, no `..`, no `.`, no empty
component; an action that breaks that completes with INVALID_ARGUMENT.

It prints `worker ready` on stdout once its bot session exists, and one line per action.

Hostile mode (tests of the client's defences only): when an action's environment sets
XBUNDLE_TEST_WORKER_HOSTILE=PATH, its result also names an output file at PATH, unchecked.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import grpc
from buildgrid._protos.google.rpc import code_pb2

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import worker_pb2

BATCH_LIMIT = 2 << 20
CHUNK = 1 << 20
# The server holds a bot's call until work comes or the deadline nears: it needs one.
LONG_POLL = 5


def digest_of(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def checked_path(path):
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refused path {path!r}")
    return path


class Cas:
    def __init__(self, channel, instance):
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)

    def read(self, digest):
        if digest.size_bytes == 0:
            return b""
        if digest.size_bytes <= BATCH_LIMIT:
            answer = self.cas.BatchReadBlobs(
                re.BatchReadBlobsRequest(instance_name=self.instance, digests=[digest])
            )
            response = answer.responses[0]
            if response.status.code != code_pb2.OK:
                raise LookupError(f"blob {digest.hash} missing")
            data = response.data
        else:
            prefix = f"{self.instance}/" if self.instance else ""
            name = f"{prefix}blobs/{digest.hash}/{digest.size_bytes}"
            data = b"".join(
                chunk.data for chunk in self.bytestream.Read(bytestream_pb2.ReadRequest(resource_name=name))
            )
        if digest_of(data) != digest:
            raise ValueError(f"blob {digest.hash} does not match its digest")
        return data

    def write(self, data):
        digest = digest_of(data)
        if len(data) <= BATCH_LIMIT:
            request = re.BatchUpdateBlobsRequest(instance_name=self.instance)
            request.requests.add(digest=digest, data=data)
            self.cas.BatchUpdateBlobs(request)
        else:
            prefix = f"{self.instance}/" if self.instance else ""
            name = f"{prefix}uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"

            def requests():
                for offset in range(0, len(data), CHUNK):
                    last = offset + CHUNK >= len(data)
                    yield bytestream_pb2.WriteRequest(
                        resource_name=name if offset == 0 else "",
                        write_offset=offset,
                        data=data[offset : offset + CHUNK],
                        finish_write=last,
                    )

            self.bytestream.Write(requests())
        return digest

    def message(self, digest, kind):
        message = kind()
        message.ParseFromString(self.read(digest))
        return message


def lay_out(cas, directory_digest, path):
    directory = cas.message(directory_digest, re.Directory)
    os.makedirs(path, exist_ok=True)
    for node in directory.files:
        target = os.path.join(path, checked_path(node.name))
        with open(target, "wb") as out:
            out.write(cas.read(node.digest))
        os.chmod(target, 0o755 if node.is_executable else 0o644)
    for node in directory.directories:
        lay_out(cas, node.digest, os.path.join(path, checked_path(node.name)))
    if directory.symlinks:
        raise ValueError("input roots with symbolic links are refused")


def upload_file(cas, path):
    with open(path, "rb") as file:
        return cas.write(file.read())


def directory_message(cas, path, tree):
    """The Directory of `path` (files uploaded), its subdirectories added to `tree.children`."""
    directory = re.Directory()
    for name in sorted(os.listdir(path)):
        child = os.path.join(path, name)
        if os.path.islink(child):
            continue
        if os.path.isfile(child):
            node = directory.files.add(name=name, is_executable=os.access(child, os.X_OK))
            node.digest.CopyFrom(upload_file(cas, child))
        elif os.path.isdir(child):
            message = directory_message(cas, child, tree)
            tree.children.append(message)
            node = directory.directories.add(name=name)
            node.digest.CopyFrom(digest_of(message.SerializeToString()))
    return directory


def execute(cas, action_digest, work_dir):
    action = cas.message(action_digest, re.Action)
    command = cas.message(action.command_digest, re.Command)
    root = tempfile.mkdtemp(dir=work_dir)
    try:
        lay_out(cas, action.input_root_digest, root)
        cwd = root
        if command.working_directory:
            cwd = os.path.join(root, checked_path(command.working_directory))
            os.makedirs(cwd, exist_ok=True)
        outputs = list(command.output_paths) or list(command.output_files)
        for output in outputs:
            parent = os.path.dirname(os.path.join(cwd, checked_path(output)))
            os.makedirs(parent, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for variable in command.environment_variables:
            env[variable.name] = variable.value
        timeout = action.timeout.seconds or 600
        run = subprocess.run(
            list(command.arguments), cwd=cwd, env=env, capture_output=True, timeout=timeout
        )
        if run.returncode != 0:
            print(f"argv {list(command.arguments)} exited {run.returncode}: {run.stderr[-500:]!r}", flush=True)
        result = re.ActionResult(exit_code=run.returncode)
        result.stdout_digest.CopyFrom(cas.write(run.stdout))
        result.stderr_digest.CopyFrom(cas.write(run.stderr))
        result.execution_metadata.worker = "xbundle-test-worker"
        for output in sorted(outputs):
            path = os.path.join(cwd, output)
            if os.path.islink(path):
                continue
            if os.path.isfile(path):
                node = result.output_files.add(path=output, is_executable=os.access(path, os.X_OK))
                node.digest.CopyFrom(upload_file(cas, path))
            elif os.path.isdir(path):
                tree = re.Tree()
                tree.root.CopyFrom(directory_message(cas, path, tree))
                node = result.output_directories.add(path=output)
                node.tree_digest.CopyFrom(cas.write(tree.SerializeToString()))
        # Test scaffolding for the engine's defences: a command whose environment sets
        # XBUNDLE_TEST_WORKER_HOSTILE gets an extra output file at that path (unchecked), as a
        # hostile or broken worker would report it.
        hostile = env.get("XBUNDLE_TEST_WORKER_HOSTILE")
        if hostile:
            node = result.output_files.add(path=hostile, is_executable=False)
            node.digest.CopyFrom(cas.write(b"pwned by a hostile worker\n"))
            print(f"hostile output {hostile!r}", flush=True)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--remote", required=True)
    parser.add_argument("--instance", default="")
    parser.add_argument("--bot-id", default=f"xbundle-test-worker-{os.getpid()}")
    parser.add_argument("--property", action="append", default=[])
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args()

    target = args.remote.split("://", 1)[-1]
    channel = grpc.insecure_channel(target)
    bots = bots_pb2_grpc.BotsStub(channel)
    cas = Cas(channel, args.instance)

    device = worker_pb2.Device(handle=args.bot_id)
    for pair in args.property:
        key, _, value = pair.partition("=")
        device.properties.add(key=key, value=value)
    session = bots_pb2.BotSession(
        bot_id=args.bot_id,
        status=bots_pb2.BotStatus.OK,
        worker=worker_pb2.Worker(devices=[device]),
    )
    session = bots.CreateBotSession(
        bots_pb2.CreateBotSessionRequest(parent=args.instance, bot_session=session),
        timeout=LONG_POLL,
    )
    print("worker ready", flush=True)

    while True:
        for lease in session.leases:
            # BuildGrid hands leases out already ACTIVE; the protocol says PENDING. Either is
            # work not done yet (a lease this loop completed is COMPLETED until the server drops it).
            if lease.state not in (bots_pb2.LeaseState.PENDING, bots_pb2.LeaseState.ACTIVE):
                continue
            lease.state = bots_pb2.LeaseState.ACTIVE
            if lease.payload.Is(re.Action.DESCRIPTOR):
                action = re.Action()
                lease.payload.Unpack(action)
                action_digest = digest_of(action.SerializeToString())
            else:
                action_digest = re.Digest()
                lease.payload.Unpack(action_digest)
            try:
                result = execute(cas, action_digest, args.work_dir)
                lease.result.Pack(result)
                lease.status.code = code_pb2.OK
                print(f"executed {action_digest.hash} exit {result.exit_code}", flush=True)
            except ValueError as err:
                lease.status.code = code_pb2.INVALID_ARGUMENT
                lease.status.message = str(err)
                print(f"refused {action_digest.hash}: {err}", flush=True)
            except Exception as err:  # a worker reports, it does not die
                lease.status.code = code_pb2.INTERNAL
                lease.status.message = str(err)
                print(f"failed {action_digest.hash}: {err}", flush=True)
            lease.state = bots_pb2.LeaseState.COMPLETED
        session = bots.UpdateBotSession(
            bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session),
            timeout=LONG_POLL,
        )
        if not any(
            lease.state in (bots_pb2.LeaseState.PENDING, bots_pb2.LeaseState.ACTIVE)
            for lease in session.leases
        ):
            time.sleep(0.1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
