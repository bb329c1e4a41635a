# SPDX-License-Identifier: MIT
"""Clean: subprocess and os.posix_spawn, with a thread alive."""
import os
import subprocess
import threading

stop = threading.Event()
t = threading.Thread(target=stop.wait)
t.start()
out = subprocess.run(["/bin/echo", "hi"], capture_output=True, check=True)
assert out.stdout == b"hi\n"
subprocess.run("ls / | wc -l", shell=True, check=True, capture_output=True)
pid = os.posix_spawn("/bin/true", ["true"], os.environ)
assert os.waitpid(pid, 0)[1] == 0
stop.set()
t.join()
