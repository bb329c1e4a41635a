# SPDX-License-Identifier: MIT
# Hazard: a perl thread holds lock() on a shared variable while the main
# thread forks; the child then locks it too (without the audit it waits
# forever). Writes the holder's native TID to $ARGV[0].
use strict;
use warnings;
use threads;
use threads::shared;

my $x : shared = 0;
my $go : shared = 0;
my $t = threads->create(sub {
    lock($x);
    open(my $f, '>', $ARGV[0]) or die;
    print $f syscall(186);    # gettid (x86_64)
    close($f);
    { lock($go); $go = 1; cond_signal($go); }
    sleep 3;
});
{ lock($go); cond_wait($go) until $go; }
my $pid = fork() // die;
if ($pid == 0) {
    { lock($x); }
    exit 0;
}
waitpid($pid, 0);
$t->join();
exit 0;
