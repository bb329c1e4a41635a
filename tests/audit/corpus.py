#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""corpus.py --cli FORKSAFE_AUDIT --targets DIR [--out FILE] [CASE...]

The audit's accuracy corpus: real programs run under forksafe-audit
(--json), each either clean (it must give no warning and no error: every
one it gives is a false finding) or hazardous (its hazard must be found
with the right kind and, where a thread holds the hazard, that thread
named by its TID: otherwise it is missed; what else it reports is listed).
Prints one line per case and the figures (found, missed, false: warnings
and errors on the clean programs); exits 1 when a hazard was missed or a
clean program gave a warning or error. Each report is also validated
against docs/forksafe.schema.json.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, 'corpus')
PY = '/usr/bin/python3'


def sh(cmd):
    return ['/bin/bash', '-c', cmd]


def cases(tmp, targets):
    """(name, argv, expected kind or None for clean, tid file or None,
    extra audit options)."""
    repo = os.path.join(tmp, 'repo')
    tidf = os.path.join(tmp, 'tid')
    c = [
        # clean
        ('bash-pipeline',
         sh('seq 1 5000 | sort -rn | head -n 100 | tr 0-9 a-j | wc -l '
            '>/dev/null; for i in 1 2 3; do echo $i | cat; done >/dev/null'),
         None, None, []),
        ('make-j2-recursive',
         ['/usr/bin/make', '-s', '-j2', '-f',
          os.path.join(CORPUS, 'recursive.mk'), 'OUT=' + tmp],
         None, None, []),
        ('git-status-log-gc',
         sh('set -e; git init -q %s; cd %s; for i in 1 2 3 4 5; do '
            'echo $i > f$i; git add f$i; git -c user.name=c -c '
            'user.email=c@c commit -qm $i; done; git status --short; '
            'git log --oneline >/dev/null; git gc -q' % (repo, repo)),
         None, None, []),
        ('tar',
         sh('set -e; cd %s; mkdir -p t/d; seq 1 3000 > t/d/x; '
            'tar -czf t.tgz t; rm -r t; tar -xzf t.tgz; test -s t/d/x'
            % tmp),
         None, None, []),
        ('xz-T2',
         sh('seq 1 300000 | xz -T2 -3 | xz -d -T2 | tail -n 1 >/dev/null'),
         None, None, []),
        ('perl-system',
         ['/usr/bin/perl', '-e',
          'system("/bin/true") == 0 or die; my $o = `echo hi`; '
          'system("sh", "-c", "exit 0") == 0 or die;'],
         None, None, []),
        ('python-subprocess-posix-spawn',
         [PY, os.path.join(CORPUS, 'subprocess_spawn.py')], None, None, []),
        ('python-threads-no-fork',
         [PY, os.path.join(CORPUS, 'threads_no_fork.py')], None, None, []),
        # hazardous
        ('python-mp-fork-lock-held',
         [PY, os.path.join(CORPUS, 'mp_fork_lock.py'), tidf],
         'child-deadlock', tidf, ['--grace-ms', '500']),
        ('python-thread-logging',
         [PY, os.path.join(CORPUS, 'thread_logging.py'), tidf],
         'child-deadlock', tidf, ['--grace-ms', '500']),
        ('python-process-pool-after-thread-pool',
         [PY, os.path.join(CORPUS, 'pool_after_threads.py')],
         'fork-with-threads', None, []),
        ('python-sqlite-in-thread',
         [PY, os.path.join(CORPUS, 'sqlite_thread.py'),
          os.path.join(tmp, 'db.sqlite')],
         'library-without-adapter', None, []),
        ('c-stdio-unflushed-at-fork',
         [os.path.join(targets, 'target-stdio'), 'exit'],
         'stdio-unflushed-at-fork', None, []),
        ('bash-planted-fd-leak',
         sh('exec 7>%s/leak.txt; /bin/true; echo planted >&7' % tmp),
         'fd-leak-on-exec', None, []),
        ('perl-threads-lock-held',
         ['/usr/bin/perl', os.path.join(CORPUS, 'perl_threads.pl'), tidf],
         'child-deadlock', tidf, ['--grace-ms', '500']),
    ]
    return c


def holder_named(findings, tid):
    for f in findings:
        d = f.get('details', {})
        if d.get('holder_tid') == tid:
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cli', required=True)
    ap.add_argument('--targets', required=True)
    ap.add_argument('--out')
    ap.add_argument('only', nargs='*')
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='fsaudit-corpus-')
    lines = []
    found = missed = false = 0
    hazards = clean = 0
    try:
        for name, argv, want, tidf, opts in cases(tmp, a.targets):
            if a.only and name not in a.only:
                continue
            if tidf and os.path.exists(tidf):
                os.unlink(tidf)
            rep = os.path.join(tmp, name + '.json')
            t0 = time.monotonic()
            p = subprocess.run([a.cli, '--json', rep] + opts + ['--'] + argv,
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=300,
                               cwd=tmp)
            secs = time.monotonic() - t0
            v = subprocess.run([PY, os.path.join(HERE, 'check_report.py'),
                                '--any', rep], capture_output=True, text=True)
            if v.returncode != 0:
                print(v.stdout + v.stderr)
                raise SystemExit('%s: the report is not valid' % name)
            with open(rep) as f:
                doc = json.load(f)
            bad = [f for f in doc['findings']
                   if f['severity'] in ('warning', 'error')]
            note = ''
            if p.returncode != 0:
                note = ' (program exited %d)' % p.returncode
            if want is None:
                clean += 1
                false += len(bad)
                verdict = 'clean' if not bad else 'FALSE %s' % sorted(
                    {f['kind'] for f in bad})
            else:
                hazards += 1
                hit = [f for f in bad if f['kind'] == want]
                ok = bool(hit)
                if ok and tidf:
                    try:
                        tid = int(open(tidf).read())
                    except (OSError, ValueError):
                        tid = None
                    ok = tid is not None and holder_named(hit, tid)
                    if not ok:
                        note += ' (holder thread not named)'
                # What else it reported is listed, not judged: in a
                # hazardous program the other findings are consequences of
                # the same hazard (the child also took the holder's other
                # locks), so "false" counts the clean programs only.
                also = sorted({f['kind'] for f in bad if f['kind'] != want})
                if ok:
                    found += 1
                    verdict = 'found %s' % want
                else:
                    missed += 1
                    verdict = 'MISSED %s, got %s' % (
                        want, sorted({f['kind'] for f in bad}))
                if also and ok:
                    note += ' (also: %s)' % ', '.join(also)
            line = '  %-40s %-50s %5.1f s%s' % (name, verdict, secs, note)
            print(line, flush=True)
            lines.append(line)
        total = ('corpus: %d clean programs, %d hazardous: found %d, '
                 'missed %d, false %d' % (clean, hazards, found, missed,
                                          false))
        print(total)
        if a.out:
            with open(a.out, 'w') as f:
                f.write('\n'.join(lines + [total]) + '\n')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if missed or false else 0


if __name__ == '__main__':
    sys.exit(main())
