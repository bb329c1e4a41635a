#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the seed inputs of tests/fuzz/corpus/zygote-decode/.

Each seed is one fuzz input: byte 0 is the number of descriptors received,
the rest a request record as src/spawn-zygote.h lays it out (host byte
order; this writes little-endian, the order of every machine the tests run
on). Run it again after changing the header; files it does not name (crash
inputs the fuzzer found) are left alone."""
import os
import struct

MAGIC = 0x315a5346
SPAWN = 1
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus',
                    'zygote-decode')


def hdr(name_len, arg_len, nfds, magic=MAGIC, kind=SPAWN, reserved=0, seq=7,
        deadline=0):
    # magic, kind, name_len, arg_len, nfds, reserved, seq, deadline
    return struct.pack('<IIIIIIQQ', magic, kind, name_len, arg_len, nfds,
                       reserved, seq, deadline)


def req(name, arg=b'', nfds=0, received=None, **kw):
    received = nfds if received is None else received
    return bytes([received]) + hdr(len(name), len(arg), nfds, **kw) + arg + name


SEEDS = {
    'empty': b'',
    'truncated-header': bytes([0]) + hdr(4, 0, 0)[:19],
    'header-without-deadline': bytes([0]) + hdr(4, 0, 0)[:32] + b'echo',
    'valid-empty': req(b'echo'),
    'valid-deadline': req(b'echo', deadline=123456789012345),
    'valid-arg-fds': req(b'worker', b'\x00\x01hello\x00' * 8, nfds=3),
    'valid-name-max': req(b'n' * 64, b'a'),
    'name-empty': req(b''),
    'name-nul': req(b'ec\x00o'),
    'name-too-long': req(b'n' * 65),
    'bad-magic': req(b'echo', magic=0xdeadbeef),
    'bad-kind': req(b'echo', kind=2),
    'reserved-set': req(b'echo', reserved=1),
    'arg-too-big': bytes([0]) + hdr(4, 70000, 0) + b'echo',
    'arg-len-lies': bytes([0]) + hdr(4, 300, 0) + b'abc' + b'echo',
    'size-overflow': bytes([0]) + hdr(0xffffffff, 0xffffffff, 0) + b'echo',
    'fds-declared-too-many': req(b'echo', nfds=65, received=0),
    'fds-mismatch': req(b'echo', nfds=1, received=2),
    'fds-received-too-many': req(b'echo', nfds=200, received=200),
}

if __name__ == '__main__':
    os.makedirs(HERE, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(HERE, name), 'wb') as f:
            f.write(data)
    print('wrote %d seeds to %s' % (len(SEEDS), HERE))
