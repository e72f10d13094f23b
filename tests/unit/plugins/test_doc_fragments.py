"""The log-archive options are documented once (doc fragment sre.gunicorn_doctor.log_archive): its two forms - archive_logs'
options, the `archive` of stop_strays, service_state and service_apply - say the same, and agree with the one
argument spec (module_args.ARCHIVE), defaults and required included."""

import yaml

from ansible_collections.sre.gunicorn_doctor.plugins.doc_fragments.log_archive import ModuleDocFragment
from ansible_collections.sre.gunicorn_doctor.plugins.module_utils.stabilize import module_args


def test_archive_logs_options_and_the_archive_suboptions_are_the_same_text():
    # ARCHIVE is built from DOCUMENTATION's text at import time: both must still parse, to the same options.
    top = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    options = yaml.safe_load(ModuleDocFragment.ARCHIVE)['options']
    assert list(options) == ['archive']
    nested = options['archive']
    assert nested['type'] == 'dict' and nested['suboptions'] == top


def test_the_fragment_documents_the_argument_spec_exactly():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert sorted(documented) == sorted(module_args.ARCHIVE)
    for name, spec in module_args.ARCHIVE.items():
        doc = documented[name]
        assert (doc['type'], doc.get('elements'), doc.get('default'), doc.get('required', False)) == (
            spec['type'], spec.get('elements'), spec.get('default'), spec.get('required', False)), name
