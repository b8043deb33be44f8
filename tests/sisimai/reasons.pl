#!/usr/bin/perl
# Reads "key<TAB>reply" lines on standard input and prints "key<TAB>reason" for each, the reason
# being what Sisimai's reason matcher (Sisimai::Reason->match, Debian libsisimai-perl) makes of
# the reply's text: an independent reading of failmail's catalog, used by tests/realism.rs.
use strict;
use warnings;
use Sisimai::Reason;

binmode STDIN, ':encoding(UTF-8)';
binmode STDOUT, ':encoding(UTF-8)';
while (my $line = <STDIN>) {
    chomp $line;
    my ($key, $reply) = split /\t/, $line, 2;
    next unless defined $reply;
    my $reason = Sisimai::Reason->match($reply) // '';
    print "$key\t$reason\n";
}
