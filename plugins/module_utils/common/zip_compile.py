# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile each module imported from a zip once, not twice.

A module runs on a host from its AnsiballZ zip, and Python's zipimport compiles a module's source twice: once when
the import machinery asks for the module's file name to build its spec (zipimporter.get_filename), once more to run
it (CPython gh-141276, still open; seen on 3.8 to 3.13). Compiling is most of what importing the probe's module_utils
costs: twice cost a healthy host ~70 ms of a probe's ~0.6 s of CPU, and across a fleet the hosts' CPU is what an
audit waits for. compile_once() keeps the first compile of a source for the second; the code is the same (compile()
of the same bytes and name, in the same interpreter).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def compile_once():
    """From now on, zipimport compiles each (path, source) once in this process. Leaves a zipimport without the
    function it wraps (another Python) as it is. -> True when it is in place."""
    try:
        import zipimport
        compile_source = zipimport._compile_source
    except (ImportError, AttributeError):
        return False
    if getattr(compile_source, 'compiles_once', False):
        return True
    first = {}

    def compile_source_once(pathname, source):
        code = first.pop((pathname, source), None)   # the second compile of a source: the first one's code
        if code is None:
            code = compile_source(pathname, source)
            first[(pathname, source)] = code
        return code

    compile_source_once.compiles_once = True
    zipimport._compile_source = compile_source_once
    return True
