"""The certificate authorities of a TLS test module, made once per module in one directory: ``ca``
issues the servers' certificates, ``client_ca`` the clients' (the one mTLS trusts), and
``rogue_ca`` what nobody trusts. A module subclasses ``Pki`` to issue its certificates:

    class Certs(Pki):
        def __init__(self, directory: Path) -> None:
            super().__init__(directory)
            self.api = self.ca.issue("api", "api.example.com", ["api.example.com"])

    @pytest.fixture(scope="module")
    def pki(tmp_path_factory: pytest.TempPathFactory) -> Certs:
        return Certs(tmp_path_factory.mktemp("pki"))
"""
from __future__ import annotations

from pathlib import Path

from tests.support.certs import CertAuthority


class Pki:
    def __init__(self, directory: Path, ca_name: str = "Test CA") -> None:
        self.ca = CertAuthority(directory / "servers", ca_name)
        self.client_ca = CertAuthority(directory / "clients", "Client CA")
        self.rogue_ca = CertAuthority(directory / "rogue", "Rogue CA")
