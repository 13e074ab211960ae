"""systemd notify protocol against a real AF_UNIX datagram socket (path and abstract names)."""

import os
import socket
import uuid

import pytest

from daemon.service.systemd import Notifier, watchdog_interval


@pytest.fixture
def abstract_socket():
    name = f"duskwatch-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    yield "@" + name, s
    s.close()


def test_ready_status_stopping_on_a_path_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("2/2 cameras streaming")
    assert sock.recv(4096) == b"READY=1\nSTATUS=2/2 cameras streaming"
    assert n.status("multi\nline   status")
    assert sock.recv(4096) == b"STATUS=multi line status"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_socket(abstract_socket):
    name, sock = abstract_socket
    n = Notifier(environ={"NOTIFY_SOCKET": name})
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_noop():
    n = Notifier(environ={})
    assert not n.enabled
    assert n.ready() is False


def test_vanished_socket_warns_once_and_does_not_raise(tmp_path, caplog):
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.watchdog() is False
    assert n.watchdog() is False
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1


def test_watchdog_interval():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
