package Fizz::Function;
# The user's function: loading its file (errors name the file and line), the context a call
# gets, and turning what it returns into a response.
use strict;
use warnings;
use Encode ();
use JSON::PP ();

use Exporter 'import';
our @EXPORT_OK = qw(load_function build_context call_function);

my $JSON = JSON::PP->new->canonical->allow_nonref;

# Perl's message, on one line, trimmed ("... at hello.pl line 3.").
sub _message { my ($err) = @_; $err = "$err"; $err =~ s/\s+$//; $err =~ s/\n\s*/; /g; return $err }

# Compiles `$path` into its own package, its errors naming `$filename` and the line; returns
# (code ref, undef) or (undef, message).
sub load_function {
    my ($path, $filename, $entrypoint) = @_;
    open my $fh, '<:raw', $path or return (undef, "$filename: cannot read: $!");
    my $source = do { local $/; <$fh> };
    close $fh;
    my $package = 'Fizz::User';
    # `exit` in the function's code (at load or in a call) dies instead, so it is an error
    # answered as such rather than a loader or a call that vanishes. Bound when the code compiles.
    no warnings 'once';
    *CORE::GLOBAL::exit = sub (;$) { die "the function called exit\n" };
    # `#line` makes compile and run-time errors say "at hello.pl line N", the user's own file.
    my $ok = eval "package $package;\n#line 1 \"$filename\"\n$source\n;1;";    ## no critic
    return (undef, _message($@ || "$filename: loading did not return true")) unless $ok;
    my $fn = $package->can($entrypoint);
    return (undef, "$filename: entrypoint \"$entrypoint\" is not a defined sub") unless $fn;
    return ($fn, undef);
}

sub _unescape {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

# The hash a call gets: method, path, query (first value of each key), headers (lower-case),
# body (the raw bytes), params (X-Fizz-Params-<name>), request_id, function.
sub build_context {
    my ($req, $body, $function) = @_;
    my %query;
    for my $pair (split /&/, $req->{query}) {
        my ($k, $v) = split /=/, $pair, 2;
        $k = _unescape($k);
        $query{$k} //= _unescape($v // '');
    }
    my %params;
    for my $name (keys %{ $req->{headers} }) {
        $params{$1} = $req->{headers}{$name} if $name =~ /^x-fizz-params-(.+)$/;
    }
    # Route parameter names keep their case as the gateway sent them.
    if (%params) {
        %params = ();
        for my $line (split /\r\n/, $req->{raw_head} // '') {
            $params{$1} = $2 if $line =~ /^x-fizz-params-([^:]+):[ \t]*(.*?)[ \t]*$/i;
        }
    }
    return {
        method => $req->{method}, path => _unescape_path($req->{path}), query => \%query,
        headers => { %{ $req->{headers} } }, body => $body, params => \%params,
        request_id => $req->{headers}{'x-request-id'} // _uuid(), function => { %$function },
    };
}

sub _unescape_path { my ($p) = @_; $p =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; return $p }

sub _uuid {
    my @b = map { int rand 256 } 1 .. 16;
    $b[6] = ($b[6] & 0x0f) | 0x40;
    $b[8] = ($b[8] & 0x3f) | 0x80;
    return sprintf '%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x', @b;
}

sub _bytes { my ($s) = @_; return utf8::is_utf8($s) ? Encode::encode('UTF-8', $s) : $s }

my $TOKEN_CHARS = qr/^[!#\$%&'*+.^_`|~0-9A-Za-z-]+$/;

sub _header {
    my ($name, $value) = @_;
    die "header name \"$name\" is not a token\n" unless defined $name && $name =~ $TOKEN_CHARS;
    return [$name, defined $value ? "$value" : ''];
}

# What the function returned, as (status, [[name, value]...], body bytes); dies on a value that
# cannot be answered.
sub _response {
    my ($result) = @_;
    return (204, [], '') unless defined $result;
    if (!ref $result) {
        return (200, [['Content-Type', 'text/plain; charset=utf-8']], _bytes($result));
    }
    if (ref $result eq 'HASH' && (exists $result->{status} || exists $result->{body})
        && !grep { !/^(status|headers|body)$/ } keys %$result) {
        my $status = $result->{status} // 200;
        if ($status =~ /^\d+$/) {
            die "status $status is not an HTTP status\n" if $status < 200 || $status > 599;
            my @headers;
            my $given = $result->{headers} // {};
            die "headers must be a hash\n" unless ref $given eq 'HASH';
            push @headers, _header($_, $given->{$_}) for sort keys %$given;
            my $body = $result->{body};
            my $typed = grep { lc($_->[0]) eq 'content-type' } @headers;
            if (ref $body) {
                push @headers, ['Content-Type', 'application/json'] unless $typed;
                $body = $JSON->encode($body);
            } elsif (defined $body) {
                push @headers, ['Content-Type', 'text/plain; charset=utf-8'] unless $typed;
            }
            return ($status, \@headers, _bytes($body // ''));
        }
    }
    # A PSGI triple: [status, [name => value, ...], [chunks]].
    if (ref $result eq 'ARRAY' && @$result == 3 && !ref $result->[0] && ($result->[0] // '') =~ /^\d{3}$/
        && ref $result->[1] eq 'ARRAY' && ref $result->[2] eq 'ARRAY') {
        my ($status, $flat, $chunks) = @$result;
        die "status $status is not an HTTP status\n" if $status < 200 || $status > 599;
        my @headers;
        push @headers, _header($flat->[$_], $flat->[$_ + 1]) for grep { $_ % 2 == 0 } 0 .. $#$flat;
        return ($status, \@headers, join '', map { _bytes($_) } @$chunks);
    }
    if (ref $result eq 'HASH' || ref $result eq 'ARRAY') {
        return (200, [['Content-Type', 'application/json']], $JSON->encode($result));
    }
    die 'cannot answer with a ' . ref($result) . "\n";
}

# Calls the function: ('ok', status, headers, body) or ('error', message).
sub call_function {
    my ($fn, $context) = @_;
    my @answer = eval { _response(scalar $fn->($context)) };
    return ('error', _message($@ || 'the function failed')) unless @answer;
    return ('ok', @answer);
}

1;
