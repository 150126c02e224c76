package Fizz::Http;
# HTTP/1.1 for the Perl environment: parses requests out of a connection's buffer (Content-Length
# and chunked bodies, a size cap), and writes responses, including the platform's error answers.
use strict;
use warnings;
use JSON::PP ();

use Exporter 'import';
our @EXPORT_OK = qw(parse_head read_body send_response send_error json_encode);

my $JSON = JSON::PP->new->canonical->allow_nonref;
sub json_encode { return $JSON->encode($_[0]) }

my %REASON = (
    200 => 'OK', 201 => 'Created', 202 => 'Accepted', 204 => 'No Content', 301 => 'Moved Permanently',
    302 => 'Found', 304 => 'Not Modified', 400 => 'Bad Request', 401 => 'Unauthorized',
    403 => 'Forbidden', 404 => 'Not Found', 409 => 'Conflict', 413 => 'Payload Too Large',
    421 => 'Misdirected Request', 429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
    500 => 'Internal Server Error', 503 => 'Service Unavailable',
);

my $MAX_HEAD = 64 * 1024;

# The request line and headers, once the buffer holds them all: a hash with method, target, path,
# query string, version, headers (lower-case names; repeated ones joined with ", "), keep_alive and
# head_length. undef while incomplete; {error => ...} when malformed.
sub parse_head {
    my ($buf) = @_;
    my $end = index($$buf, "\r\n\r\n");
    if ($end < 0) {
        return length($$buf) > $MAX_HEAD ? { error => 'request head too large', status => 431 } : undef;
    }
    my @lines = split /\r\n/, substr($$buf, 0, $end);
    my ($method, $target, $version) = (shift(@lines) // '') =~ m{^([A-Z]+) (\S+) HTTP/(1\.[01])$}
        or return { error => 'malformed request line', status => 400 };
    my %headers;
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([!#\$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/
            or return { error => 'malformed header', status => 400 };
        $name = lc $name;
        $headers{$name} = exists $headers{$name} ? "$headers{$name}, $value" : $value;
    }
    my ($path, $query) = $target =~ /^([^?]*)(?:\?(.*))?$/;
    my $connection = lc($headers{connection} // '');
    my $keep_alive = $version eq '1.1' ? $connection !~ /\bclose\b/ : $connection =~ /\bkeep-alive\b/;
    my $chunked = lc($headers{'transfer-encoding'} // '') =~ /\bchunked\b/ ? 1 : 0;
    my $length = $headers{'content-length'};
    return { error => 'bad Content-Length', status => 400 }
        if defined $length && ($length !~ /^\d{1,18}$/ || $chunked);
    return {
        method => $method, target => $target, path => $path, query => $query // '',
        version => $version, headers => \%headers, keep_alive => $keep_alive,
        chunked => $chunked, length => $length // 0, head_length => $end + 4,
        raw_head => substr($$buf, 0, $end),
    };
}

# The body of the request whose head is `$req`, from the buffer (which starts after the head):
# ('done', $body, $consumed), ('more'), or ('too_large') past $max bytes, or ('bad').
sub read_body {
    my ($req, $buf, $max) = @_;
    if (!$req->{chunked}) {
        return ('too_large') if $req->{length} > $max;
        return ('more') if length($$buf) < $req->{length};
        return ('done', substr($$buf, 0, $req->{length}), $req->{length});
    }
    my ($pos, $body) = (0, '');
    while (1) {
        my $eol = index($$buf, "\r\n", $pos);
        return length($$buf) - $pos > 1024 ? ('bad') : ('more') if $eol < 0;
        my ($size) = substr($$buf, $pos, $eol - $pos) =~ /^([0-9a-fA-F]{1,15})(?:;.*)?$/
            or return ('bad');
        $size = hex $size;
        if ($size == 0) {
            # Trailers (ignored) up to an empty line.
            my $at = $eol + 2;
            while (1) {
                my $next = index($$buf, "\r\n", $at);
                return ('more') if $next < 0;
                return ('done', $body, $next + 2) if $next == $at;
                $at = $next + 2;
            }
        }
        return ('too_large') if length($body) + $size > $max;
        return ('more') if length($$buf) < $eol + 2 + $size + 2;
        $body .= substr($$buf, $eol + 2, $size);
        return ('bad') if substr($$buf, $eol + 2 + $size, 2) ne "\r\n";
        $pos = $eol + 2 + $size + 2;
    }
}

# Writes a whole response; `$headers` is an array of [name, value]. False when the peer is gone.
sub send_response {
    my ($sock, $status, $headers, $body, $close) = @_;
    $body //= '';
    my $head = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n";
    my $no_body = $status == 204 || $status == 304;
    for my $h (@$headers) {
        my ($name, $value) = @$h;
        next if $name =~ /^(content-length|transfer-encoding|connection)$/i;
        $value =~ s/[\r\n]+/ /g;
        $head .= "$name: $value\r\n";
    }
    $head .= 'Content-Length: ' . length($body) . "\r\n" unless $no_body;
    $head .= $close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
    my $data = $head . "\r\n" . ($no_body ? '' : $body);
    while (length $data) {
        my $n = syswrite($sock, $data);
        return 0 unless defined $n && $n > 0;
        substr($data, 0, $n, '');
    }
    return 1;
}

# The platform's error answer: {"error":{"code","message","retryable"[,"field"]}}.
sub send_error {
    my ($sock, $status, $code, $message, %opt) = @_;
    my %error = (code => $code, message => $message,
        retryable => $opt{retryable} ? JSON::PP::true : JSON::PP::false);
    $error{field} = $opt{field} if defined $opt{field};
    my @headers = (['Content-Type', 'application/json']);
    push @headers, ['Retry-After', $opt{retry_after}] if defined $opt{retry_after};
    return send_response($sock, $status, \@headers, json_encode({ error => \%error }), $opt{close});
}

1;
