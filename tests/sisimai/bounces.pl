#!/usr/bin/perl
# Reads bounces with Sisimai (Debian libsisimai-perl) and prints, for every failed recipient it
# finds, one tab-separated line: file, recipient, reply code, delivery status, SMTP command,
# reason, the MTA format Sisimai recognised, and the diagnostic (whitespace folded). tests/import.rs
# uses it as an independent reading of the fixtures.
use strict;
use warnings;
use Sisimai;

binmode STDOUT, ':encoding(UTF-8)';
for my $file (@ARGV) {
    my $records = Sisimai->make($file, 'delivered' => 0);
    if (!$records) {
        print join("\t", $file, '', '', '', '', '', '', ''), "\n";
        next;
    }
    for my $record (@$records) {
        my $diagnostic = $record->diagnosticcode // '';
        $diagnostic =~ s/\s+/ /g;
        print join("\t",
            $file,
            $record->recipient->address // '',
            $record->replycode // '',
            $record->deliverystatus // '',
            $record->smtpcommand // '',
            $record->reason // '',
            $record->smtpagent // '',
            $diagnostic), "\n";
    }
}
