# -*- coding: utf-8 -*-
# Copyright: sre.gunicorn_doctor contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move old logs out of the way (runbook 1.1) into compressed, timestamped archives.

"Old" means written by runs that are over: a log is archived only when no live process holds it
open (a log the running service writes to is current and stays; at each restart stabilize makes,
the service's logs are archived while it is stopped, so the new run starts a clean log).
A log leaves its place only after its compressed copy is written, synced and read back equal;
the newest `keep` archives are kept, older archive directories are deleted whole.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import gzip
import hashlib
import os
import re
import shutil

from ansible_collections.sre.gunicorn_doctor.plugins.module_utils import safe_read

STAMP = re.compile(r'^\d{8}T\d{6}Z$')
CHUNK = 1 << 20


def candidates(paths, patterns, archive_dir):
    """Existing, non-empty regular files among `paths` and the `patterns` globs (rotated siblings
    such as gunicorn.log.1), never inside the archive itself. -> sorted unique real paths."""
    archive = os.path.realpath(archive_dir) + os.sep
    found = set()
    for path in list(paths) + [m for pattern in patterns for m in glob.glob(pattern)]:
        if not path:
            continue
        real = os.path.realpath(path)
        if real.startswith(archive) or not os.path.isfile(real) or os.path.islink(path):
            continue
        if os.path.getsize(real) == 0:
            continue
        found.add(real)
    return sorted(found)


def open_files(psutil):
    """{real path: [pid, ...]} of every regular file a live process has open."""
    held = {}
    for proc in psutil.process_iter():
        try:
            files = proc.open_files()
        except Exception:  # gone, a zombie, or not ours to read
            continue
        for f in files:
            held.setdefault(os.path.realpath(f.path), []).append(proc.pid)
    return held


def _sha256(fileobj):
    digest = hashlib.sha256()
    for block in iter(lambda: fileobj.read(CHUNK), b''):
        digest.update(block)
    return digest.hexdigest()


def _unique(path):
    if not os.path.exists(path):
        return path
    n = 1
    while os.path.exists('%s.%d' % (path, n)):
        n += 1
    return '%s.%d' % (path, n)


def archive_file(path, target_dir):
    """Compress `path` into target_dir, verify the copy, then remove the original.
    -> dict(path, archived_as, bytes, sha256). Raises OSError and leaves the original in place."""
    if not os.path.isdir(target_dir):
        os.makedirs(target_dir, 0o750)
    name = os.path.basename(path)
    already_gz = name.endswith('.gz')
    dest = _unique(os.path.join(target_dir, name if already_gz else name + '.gz'))
    src, refused = safe_read.open_regular(path)   # never a FIFO or a device swapped in since the scan
    if src is None:
        raise OSError('%s %s' % (path, refused))
    with src:
        digest = _sha256(src)
        size = src.tell()
        src.seek(0)
        tmp = dest + '.part'
        try:
            with open(tmp, 'wb') as raw:
                if already_gz:
                    shutil.copyfileobj(src, raw, CHUNK)
                else:
                    with gzip.GzipFile(filename=name, mode='wb', fileobj=raw, mtime=int(os.path.getmtime(path))) as gz:
                        shutil.copyfileobj(src, gz, CHUNK)
                raw.flush()
                os.fsync(raw.fileno())
            # Read the copy back: the original goes only when the archive holds the same bytes.
            with open(tmp, 'rb') as check:
                copy = _sha256(check) if already_gz else _sha256(gzip.GzipFile(fileobj=check))
            if copy != digest:
                raise OSError('the archive copy of %s does not match the original' % path)
            os.rename(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    shutil.copystat(path, dest)
    os.unlink(path)
    return {'path': path, 'archived_as': dest, 'bytes': size, 'sha256': digest}


def archives(archive_dir):
    """Archive directories (timestamp names), oldest first."""
    if not os.path.isdir(archive_dir):
        return []
    return sorted(d for d in os.listdir(archive_dir) if STAMP.match(d) and os.path.isdir(os.path.join(archive_dir, d)))


def prune(archive_dir, keep, dry_run=False, adding=None):
    """Delete archive directories beyond the newest `keep` (`adding`: one a dry run would create).
    -> the deleted paths."""
    old = archives(archive_dir)
    if adding and adding not in old:
        old = sorted(old + [adding])
    old = old[:-keep] if keep > 0 else old
    deleted = [os.path.join(archive_dir, d) for d in old if d != adding]
    if not dry_run:
        for path in deleted:
            shutil.rmtree(path)
    return deleted


def plan(psutil, paths, patterns, archive_dir, current_since=0):
    """-> (to_archive, held): logs no live process holds open and the current run (started at
    `current_since`, 0: none runs) did not write, and the ones still in use."""
    held_by = open_files(psutil)
    to_archive, held = [], []
    for path in candidates(paths, patterns, archive_dir):
        if path in held_by:
            held.append({'path': path, 'pids': sorted(held_by[path])})
        elif current_since and os.path.getmtime(path) >= current_since:
            held.append({'path': path, 'pids': [], 'why': 'written by the current run'})
        else:
            to_archive.append(path)
    return to_archive, held


def run(psutil, paths, patterns, archive_dir, stamp, keep, dry_run=False, current_since=0):
    """Archive what is old, then prune. -> dict(archived, held, pruned, archive)."""
    to_archive, held = plan(psutil, paths, patterns, archive_dir, current_since)
    target = os.path.join(archive_dir, stamp)
    archived = []
    for path in to_archive:
        if dry_run:
            archived.append({'path': path, 'archived_as': os.path.join(target, os.path.basename(path) + '.gz'),
                             'bytes': os.path.getsize(path)})
        else:
            archived.append(archive_file(path, target))
    pruned = prune(archive_dir, keep, dry_run, stamp) if archived else []
    return {'archived': archived, 'held': held, 'pruned': pruned, 'archive': target if archived else None}
