"""The Google credentials check of the voice probe (probes/voice.py) on real files, and that no key
material ever reaches the facts, the verdict or the report."""

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges import voice as judge_voice
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.probes import voice
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.common.redact import redact
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.judges.shared import Layer

SOURCE = "the environment of master 4242 (/proc/4242/environ)"
NOBODY = {"uid": 65534, "gids": [65534], "name": "nobody", "who": "master 4242"}


@pytest.fixture(scope="module")
def pem():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


@pytest.fixture
def open_dir():
    """A directory every user can traverse (pytest's own tmp_path sits under a 0700 directory)."""
    path = tempfile.mkdtemp(prefix="voice-creds-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path)


def key_json(pem, **changes):
    data = {"type": "service_account", "project_id": "p", "private_key_id": "0" * 40, "private_key": pem,
            "client_email": "sa@p.iam.gserviceaccount.com"}
    data.update(changes)
    return json.dumps(data)


def key_lines(pem):
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def gcp(env, chdir, json_var=None):
    """gcp_facts as the probe runs it, without a master (the prober is the service user)."""
    return voice.gcp_facts(json_var, env, SOURCE, str(chdir), None, None)


def judged(g):
    layer = Layer("voice", {"env_where": "/etc/agentlocator.env"})
    judge_voice._judge_gcp({"gcp": g, "env_source": SOURCE}, layer)
    return layer


# --- the JSON's shape -----------------------------------------------------------------------------------
def test_shape_of_a_valid_key_names_keys_only(pem):
    shape = voice.credentials_shape(key_json(pem))
    assert shape["json_error"] is None and shape["keys_missing"] == [] and shape["keys_empty"] == []
    assert shape["type"] == "service_account" and shape["private_key_pem"] is True
    assert "private_key" in shape["key_names"]
    text = json.dumps(shape)
    assert not any(line in text for line in key_lines(pem))
    assert "sa@p.iam" not in text


@pytest.mark.parametrize("text, field, expected", [
    ('{"type": "service_account",', "json_error", "not valid JSON (Expecting"),
    ("[1, 2]", "json_error", "a JSON list, not an object"),
    ('{"type": "service_account", "project_id": "p"}', "keys_missing", ["private_key", "client_email"]),
    ('{"type": "service_account", "project_id": "", "private_key": "x", "client_email": "e"}', "keys_empty",
     ["project_id"]),
    ('{"type": "service_account", "project_id": "p", "private_key": "not a key", "client_email": "e"}',
     "private_key_pem", False),
    ('{"type": "weird", "project_id": "p", "private_key": "x", "client_email": "e"}', "type", "(unknown)"),
])
def test_shape_problems(text, field, expected):
    shape = voice.credentials_shape(text)
    value = shape[field]
    assert expected in value if isinstance(expected, str) else value == expected


# --- files ----------------------------------------------------------------------------------------------
def test_valid_file_passes(tmp_path, pem):
    path = write(tmp_path / "sa.json", key_json(pem))
    g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path)
    assert g["mode"] == "file" and g["path"] == str(path) and g["file_mode"] == "0600"
    assert g["service_can_read"] is True and g["shape"]["type"] == "service_account"
    layer = judged(g)
    assert layer.causes == []
    assert layer.checks[0]["status"] == "pass"
    assert "a service_account key with type, project_id, private_key, client_email" in layer.checks[0]["detail"]


def test_relative_path_is_read_from_the_app_directory(tmp_path, pem):
    write(tmp_path / "sa.json", key_json(pem))
    g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": "sa.json"}, tmp_path)
    assert g["path"] == str(tmp_path / "sa.json") and g["as_set"] == "sa.json" and g["exists"]


def test_world_readable_key_is_noted(tmp_path, pem):
    path = write(tmp_path / "sa.json", key_json(pem), mode=0o644)
    layer = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path))
    assert layer.causes == [] and "every user of the host can read it (mode 0644)" in layer.checks[0]["detail"]


def test_missing_file(tmp_path):
    absent = tmp_path / "nope" / "sa.json"
    layer = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(absent)}, tmp_path))
    (found,) = layer.causes
    assert found["id"] == "gcp_credentials_missing" and found["severity"] == "fail"
    assert found["evidence"] == ["GOOGLE_APPLICATION_CREDENTIALS points to %s (from %s), which does not exist"
                                 % (absent, SOURCE)]
    assert "/etc/agentlocator.env" in found["remedy"] and str(absent) in found["remedy"]


def test_directory_instead_of_a_file(tmp_path):
    layer = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path)}, tmp_path))
    assert "which is not a regular file" in layer.causes[0]["evidence"][0]


@pytest.mark.parametrize("content, expected", [
    ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    ('{"type": "service_account", "project_id": "p"}', "lacks private_key, client_email (keys present: "
                                                       "project_id, type)"),
    ("\xff\xfe".encode("latin-1").decode("latin-1"), "is not valid JSON"),
])
def test_invalid_file(tmp_path, content, expected):
    path = write(tmp_path / "sa.json", content)
    layer = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path))
    (found,) = layer.causes
    assert found["id"] == "gcp_credentials_missing"
    assert any(expected in e for e in found["evidence"]), found["evidence"]
    assert found["evidence"][0].startswith("GOOGLE_APPLICATION_CREDENTIALS points to %s (from %s); mode 0600"
                                           % (path, SOURCE))


def test_binary_file_is_not_utf8(tmp_path):
    path = tmp_path / "sa.json"
    path.write_bytes(b"\x80\x81\x82")
    g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path)
    assert g["shape"]["json_error"] == "not UTF-8 text"


def test_other_credential_types_warn(tmp_path, pem):
    path = write(tmp_path / "sa.json", key_json(pem, type="authorized_user"))
    (found,) = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path)).causes
    assert found["severity"] == "warn" and "holds type authorized_user, not service_account" in found["evidence"][1]


# --- who can read it --------------------------------------------------------------------------------------
def test_mode_bits_decide_for_another_uid(open_dir):
    path = write(open_dir / "sa.json", "{}", mode=0o600)
    st = os.stat(str(path))
    owner = {"uid": st.st_uid, "gids": [st.st_gid], "name": "owner", "who": "x"}
    assert voice.readable_by(str(path), owner) == (True, None)
    ok, why = voice.readable_by(str(path), NOBODY)
    assert not ok and "(mode 0600, owner" in why and "is not readable by nobody (uid 65534)" in why
    path.chmod(0o640)
    group_member = dict(NOBODY, gids=[65534, st.st_gid])
    assert voice.readable_by(str(path), group_member)[0] is True
    assert voice.readable_by(str(path), NOBODY)[0] is False
    path.chmod(0o604)
    assert voice.readable_by(str(path), NOBODY)[0] is True


def test_a_closed_directory_blocks_the_service_user(open_dir):
    keys = open_dir / "keys"
    keys.mkdir()
    path = write(keys / "sa.json", "{}", mode=0o644)
    keys.chmod(0o700)
    try:
        ok, why = voice.readable_by(str(path), NOBODY)
    finally:
        keys.chmod(0o755)
    assert not ok and why.startswith("directory %s (mode 0700" % keys) and "is not searchable by nobody" in why


def test_unreadable_for_the_service_user_is_a_cause(open_dir, pem):
    path = write(open_dir / "sa.json", key_json(pem), mode=0o600)
    g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, open_dir)
    # What the probe records for a master running as another user (here: nobody).
    g["service_user"] = {"name": "nobody", "uid": 65534, "who": "master 4242"}
    g["service_can_read"], g["unreadable_reason"] = voice.readable_by(str(path), NOBODY)
    (found,) = judged(g).causes
    assert "the service runs as nobody (uid 65534, master 4242)" in found["evidence"][0]
    assert "is not readable by nobody (uid 65534)" in found["evidence"][1]
    assert "chown nobody %s && chmod 0600 %s" % (path, path) in found["remedy"]


def test_the_service_identity_of_a_running_master():
    import psutil
    me = psutil.Process()
    ident = voice._service_identity({"pid": me.pid, "username": me.username()}, psutil)
    assert ident["uid"] == os.geteuid() and os.getegid() in ident["gids"] and ident["who"] == "master %d" % me.pid


# --- the JSON in an environment variable ----------------------------------------------------------------
def test_json_in_an_env_var(tmp_path, pem):
    g = gcp({"GCP_SA_JSON": key_json(pem)}, tmp_path, json_var="GCP_SA_JSON")
    assert g["mode"] == "env_json" and g["shape"]["type"] == "service_account"
    assert judged(g).causes == []
    bad = judged(gcp({"GCP_SA_JSON": '{"type": "service_account"}'}, tmp_path, json_var="GCP_SA_JSON"))
    assert "the JSON in GCP_SA_JSON lacks project_id, private_key, client_email" in bad.causes[0]["evidence"][1]


def test_env_var_named_but_unset(tmp_path):
    (found,) = judged(gcp({}, tmp_path, json_var="GCP_SA_JSON")).causes
    assert found["evidence"][0] == "doctor_gcp_credentials_env names GCP_SA_JSON, which %s does not set" % SOURCE


def test_env_var_holding_a_path_is_read_as_a_file(tmp_path, pem):
    path = write(tmp_path / "sa.json", key_json(pem))
    g = gcp({"GCP_SA_JSON": str(path)}, tmp_path, json_var="GCP_SA_JSON")
    assert g["mode"] == "file" and g["path"] == str(path) and judged(g).causes == []


# --- no credentials at all --------------------------------------------------------------------------------
def test_nothing_configured_and_no_google_in_the_app_is_not_a_cause(tmp_path):
    (tmp_path / "app.py").write_text("import flask\n")
    layer = judged(gcp({}, tmp_path))
    assert layer.causes == [] and layer.checks[0]["status"] == "skip"
    assert "none configured and none needed" in layer.checks[0]["detail"]


def test_nothing_configured_but_the_app_uses_google_speech(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "speech.py").write_text("import os\n\nfrom google.cloud import speech\n")
    venv = tmp_path / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "noise.py").write_text("import google.auth\n")    # the venv is not the app
    g = gcp({}, tmp_path)
    assert g["uses_google"]["file"] == str(tmp_path / "pkg" / "speech.py") and g["uses_google"]["line"] == 3
    (found,) = judged(g).causes
    assert found["severity"] == "fail"
    assert found["evidence"] == ["GOOGLE_APPLICATION_CREDENTIALS is not set in %s" % SOURCE,
                                 "the app uses Google Cloud: %s line 3 (google.cloud)" % (tmp_path / "pkg" / "speech.py")]


def test_on_google_cloud_the_metadata_server_is_enough(tmp_path):
    (tmp_path / "app.py").write_text("from google.cloud import speech\n")
    layer = judged(gcp({"K_SERVICE": "voice"}, tmp_path))
    assert layer.causes == [] and "metadata server" in layer.checks[0]["detail"]


# --- secrets ----------------------------------------------------------------------------------------------
def test_no_key_material_anywhere(tmp_path, pem):
    """Facts, checks and causes of good and bad key files never carry the key (before any redaction)."""
    outputs = []
    for name, text in (("good.json", key_json(pem)), ("nokeys.json", key_json(pem, client_email="")),
                       ("broken.json", key_json(pem)[:-1])):
        path = write(tmp_path / name, text)
        g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, tmp_path)
        layer = judged(g)
        outputs.append(json.dumps([g, layer.checks, layer.causes]))
    g = gcp({"GCP_SA_JSON": key_json(pem)}, tmp_path, json_var="GCP_SA_JSON")
    outputs.append(json.dumps([g, judged(g).checks]))
    for text in outputs + [json.dumps(redact(json.loads(o))) for o in outputs]:
        for line in key_lines(pem):
            assert line not in text
        assert "PRIVATE KEY-----" not in text


def test_redaction_keeps_the_evidence_readable(tmp_path):
    """The report's redact() must not eat paths or variable names of the evidence."""
    absent = tmp_path / "credentials"
    (found,) = judged(gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(absent)}, tmp_path)).causes
    assert redact(found) == found
    g = gcp({"GOOGLE_APPLICATION_CREDENTIALS": str(absent)}, tmp_path)
    assert redact(g)["path"] == str(absent) and redact(g)["var"] == "GOOGLE_APPLICATION_CREDENTIALS"
    assert stat.S_IMODE(os.stat(str(tmp_path)).st_mode)   # tmp_path untouched
