"""`tandem deploy`'s Serve proxy: where it listens comes from the settings, not the YAML."""

from tandem.serve.deploy import proxy_options
from tandem.settings import load_settings


def test_the_proxy_binds_tandem_host_and_api_port():
    assert proxy_options(load_settings({}))["http_options"] == {"host": "127.0.0.1", "port": 8000}
    exposed = load_settings({"TANDEM_HOST": "0.0.0.0", "TANDEM_API_PORT": "8100"})
    assert proxy_options(exposed) == {"http_options": {"host": "0.0.0.0", "port": 8100},
                                      "proxy_location": "HeadOnly"}
