#!/usr/bin/perl
# Reads each bounce file named on the command line with Sisimai (Debian libsisimai-perl) and prints
# one tab-separated line per recipient Sisimai finds:
#   file  recipient  reason  status  replycode  action  feedbacktype
# A file in which Sisimai finds nothing prints `file  -`. Used by tests/bounces.rs.
use strict;
use warnings;
use Sisimai;

for my $path (@ARGV) {
    my $found = Sisimai->make($path, 'delivered' => 1, 'vacation' => 1) || [];
    my ($name) = $path =~ m{([^/]+)$};
    print "$name\t-\n" unless @$found;
    for my $e (@$found) {
        print join("\t", $name, $e->recipient->address, $e->reason || '', $e->deliverystatus || '',
            $e->replycode || '', $e->action || '', $e->feedbacktype || ''), "\n";
    }
}
