#!/usr/bin/perl
# Hash, array and string heavy Perl workload for c_tests/real_programs.sh.
# Deterministic: its own linear congruential generator, and hash keys are always sorted before
# they are printed.
use strict;
use warnings;

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 16; }

# 1. A large hash of generated keys to array refs; grow, then delete half.
my %h;
for my $i (0 .. 199_999) {
    my $k = sprintf("key%05d", rnd() % 30000);
    push @{ $h{$k} }, $i, "v$i";
}
my $n_keys = scalar keys %h;
my $n_vals = 0;
$n_vals += scalar @{ $h{$_} } for keys %h;
for my $k (sort keys %h) { delete $h{$k} if (rnd() % 2); }
printf "hash: %d keys, %d values, %d keys left\n", $n_keys, $n_vals, scalar keys %h;

# 2. Strings: build, split, join, substitute, reverse, sprintf.
my @words = map { join("", map { chr(97 + rnd() % 26) } 1 .. (1 + rnd() % 12)) } 1 .. 150_000;
my $text = join(" ", @words);
(my $t2 = $text) =~ s/([aeiou])([a-z])/$2$1/g;
my @parts = split /\s+/, $t2;
my %len_hist;
$len_hist{ length $_ }++ for @parts;
my $rev = reverse $text;
printf "strings: %d chars, %d words, longest %d, rev starts %s\n",
    length($text), scalar(@parts), (sort { $b <=> $a } keys %len_hist)[0], substr($rev, 0, 8);
print "lengths: ", join(",", map { "$_=$len_hist{$_}" } sort { $a <=> $b } keys %len_hist), "\n";

# 3. Word counts and sorting by count then word.
my %count;
$count{$_}++ for map { substr($_, 0, 2) } @words;
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 4];
print "top prefixes: ", join(" ", map { "$_:$count{$_}" } @top), "\n";

# 4. Arrays: push/shift queues, splice, sort of records (arrays of hashes).
my @q;
my $sum = 0;
for my $i (1 .. 300_000) {
    push @q, [$i, "x" x ($i % 40)];
    if (@q > 1000) { my $e = shift @q; $sum += $e->[0] + length $e->[1]; }
    splice(@q, rnd() % @q, 1) if $i % 7 == 0;
}
my @recs = map { { id => $_, name => "n" . (rnd() % 10000), score => rnd() % 1000 } } 1 .. 100_000;
my @sorted = sort { $a->{score} <=> $b->{score} || $a->{name} cmp $b->{name} || $a->{id} <=> $b->{id} } @recs;
printf "arrays: queue %d, sum %d, first %d/%s/%d, last %d/%s/%d\n", scalar(@q), $sum,
    @{ $sorted[0] }{qw(id name score)}, @{ $sorted[-1] }{qw(id name score)};

# 5. Nested structures built and thrown away repeatedly, and a string that grows and shrinks.
my $acc = 0;
for my $r (1 .. 200) {
    my %tree = map { ("n$_" => { kids => [ map { "c$_" } 1 .. ($_ % 10) ], val => $_ * $r }) } 1 .. 500;
    $acc += $tree{"n" . (1 + $r % 500)}{val} + scalar @{ $tree{n9}{kids} };
}
my $s = "";
for my $i (1 .. 100_000) { $s .= sprintf("%d,", $i); $s = substr($s, length($s) / 2) if length($s) > 65536; }
printf "nested: %d, string tail %s\n", $acc, substr($s, -12);
