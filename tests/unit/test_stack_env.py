"""The environment the local stack gives Ray: loopback stays loopback only for a loopback host."""

from tandem.settings import load_settings, ray_cluster_env

KEEP_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def test_a_loopback_stack_keeps_ray_on_loopback():
    for host in ("127.0.0.1", "localhost", "::1"):
        env = ray_cluster_env(load_settings({"TANDEM_HOST": host, "TANDEM_HOME": "/srv/t"}))
        assert env[KEEP_LOOPBACK] == "0", host
        assert env["RAY_AUTH_MODE"] == "token"


def test_a_stack_on_another_address_leaves_ray_alone():
    for host in ("10.0.0.5", "0.0.0.0", "head.internal"):
        env = ray_cluster_env(load_settings({"TANDEM_HOST": host, "TANDEM_HOME": "/srv/t"}))
        assert KEEP_LOOPBACK not in env, host
        assert env["RAY_AUTH_MODE"] == "token"


def test_is_loopback_reads_hosts_and_socket_addresses():
    from tandem.settings import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.2", "::ffff:192.0.2.2", "host"]))
