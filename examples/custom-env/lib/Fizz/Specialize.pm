package Fizz::Specialize;
# POST /v2/specialize, JSON form (docs/runtime-contract.md): the token, the body's fields, the
# instance id, the digest, then the code written to FIZZ_WORKDIR and the secrets and configmaps
# written as 0400 files, before the code loads. Each refusal is [status, code, message, field].
use strict;
use warnings;
use B ();
use Digest::SHA qw(sha256 sha256_hex);
use File::Path qw(make_path);
use JSON::PP ();
use MIME::Base64 qw(decode_base64);

use Exporter 'import';
our @EXPORT_OK = qw(token_ok check_body write_config);

my $NAME = qr/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
my $KEY = qr/^[A-Za-z0-9._-]{1,253}$/;

# Constant-time comparison of the header with the instance's token (both hashed first, so their
# lengths do not show either).
sub token_ok {
    my ($expected, $given) = @_;
    return 1 unless defined $expected;
    return 0 unless defined $given && length $given;
    my ($want, $got) = (sha256($expected), sha256($given));
    my $diff = 0;
    $diff |= ord(substr($want, $_, 1)) ^ ord(substr($got, $_, 1)) for 0 .. length($want) - 1;
    return $diff == 0;
}

sub _is_integer {
    my ($v) = @_;
    return 0 if !defined $v || ref $v;
    my $flags = B::svref_2object(\$v)->FLAGS;
    return 0 if $flags & B::SVp_POK;    # a JSON string, "3"
    return ($flags & (B::SVp_IOK | B::SVp_NOK)) && $v == int($v);
}

sub _is_string { my ($v) = @_; return defined $v && !ref $v && !_is_integer($v) }

sub _base64 {
    my ($v) = @_;
    return undef unless _is_string($v) && length($v) % 4 == 0 && $v =~ m{^[A-Za-z0-9+/]*={0,2}$};
    return decode_base64($v);
}

sub _refuse { my ($field, $message) = @_; return [400, 'VALIDATION_FAILED', $message, $field] }

# Secrets or configmaps: {"<name>": {"<key>": "<base64>"}}; decoded, or a refusal.
sub _config_maps {
    my ($kind, $value) = @_;
    return ({}, undef) unless defined $value;
    return (undef, _refuse($kind, "$kind must be an object")) unless ref $value eq 'HASH';
    my %out;
    for my $name (sort keys %$value) {
        my $keys = $value->{$name};
        return (undef, _refuse("$kind.$name", "$kind name must match [A-Za-z0-9][A-Za-z0-9._-]*"))
            unless $name =~ $NAME;
        return (undef, _refuse("$kind.$name", "$kind.$name must be an object")) unless ref $keys eq 'HASH';
        for my $key (sort keys %$keys) {
            my $field = "$kind.$name.$key";
            return (undef, _refuse($field, "key must match [A-Za-z0-9._-]+, not . or .."))
                if $key !~ $KEY || $key eq '.' || $key eq '..';
            my $decoded = _base64($keys->{$key});
            return (undef, _refuse($field, 'value must be base64')) unless defined $decoded;
            $out{$name}{$key} = $decoded;
        }
    }
    return (\%out, undef);
}

# Checks a decoded JSON body against the contract. Returns (spec, undef) or (undef, refusal).
sub check_body {
    my ($body, $instance_id) = @_;
    return (undef, _refuse('body', 'body must be a JSON object')) unless ref $body eq 'HASH';
    my $fn = $body->{function};
    return (undef, _refuse('function', 'function must be {namespace, name, revision}'))
        unless ref $fn eq 'HASH';
    for my $f (qw(namespace name)) {
        return (undef, _refuse("function.$f", "function.$f must be a name"))
            unless _is_string($fn->{$f}) && $fn->{$f} =~ $NAME;
    }
    return (undef, _refuse('function.revision', 'function.revision must be an integer'))
        unless _is_integer($fn->{revision}) && $fn->{revision} >= 0;
    my $filename = $body->{filename};
    return (undef, _refuse('filename', 'filename must be a file name ending in .pl or .pm'))
        unless _is_string($filename) && $filename =~ /^[A-Za-z0-9][A-Za-z0-9_.-]*\.p[lm]$/;
    my $code = _base64($body->{code});
    return (undef, _refuse('code', 'code must be base64')) unless defined $code;
    my $entrypoint = $body->{entrypoint} // 'handler';
    return (undef, _refuse('entrypoint', 'entrypoint must name a sub'))
        unless _is_string($entrypoint) && $entrypoint =~ /^[A-Za-z_]\w{0,127}$/;
    my $concurrency = $body->{concurrency} // 10;
    return (undef, _refuse('concurrency', 'concurrency must be an integer from 1 to 10000'))
        unless _is_integer($concurrency) && $concurrency >= 1 && $concurrency <= 10000;
    my $env = $body->{env} // {};
    return (undef, _refuse('env', 'env must be an object')) unless ref $env eq 'HASH';
    for my $k (sort keys %$env) {
        return (undef, _refuse("env.$k", "env.$k must be a string"))
            unless _is_string($env->{$k}) && $k =~ /^[A-Za-z_][A-Za-z0-9_]*$/;
    }
    my ($secrets, $bad_secret) = _config_maps('secrets', $body->{secrets});
    return (undef, $bad_secret) if $bad_secret;
    my ($configmaps, $bad_config) = _config_maps('configmaps', $body->{configmaps});
    return (undef, $bad_config) if $bad_config;
    my $wanted = $body->{instanceId};
    return (undef, _refuse('instanceId', 'instanceId must be a string'))
        if defined $wanted && !_is_string($wanted);
    return (undef, [421, 'MISDIRECTED', "specialize meant for instance $wanted", 'instanceId'])
        if defined $wanted && defined $instance_id && $wanted ne $instance_id;
    if (defined(my $digest = $body->{digest})) {
        return (undef, _refuse('digest', 'digest must be sha256:<hex>'))
            unless _is_string($digest) && $digest =~ /^sha256:[0-9a-f]{64}$/;
        return (undef, [400, 'DIGEST_MISMATCH', 'the code does not hash to its digest', 'digest'])
            if "sha256:" . sha256_hex($code) ne $digest;
    }
    return ({
        function => { namespace => $fn->{namespace}, name => $fn->{name}, revision => $fn->{revision} },
        filename => $filename, code => $code, entrypoint => $entrypoint,
        concurrency => $concurrency, env => $env, secrets => $secrets, configmaps => $configmaps,
    }, undef);
}

# Writes <base>/<namespace>/<name>/<key> (files 0400, directories 0700); dies on failure.
sub write_config {
    my ($base, $namespace, $maps) = @_;
    make_path($base, { mode => 0700 }) unless -d $base;
    for my $name (sort keys %$maps) {
        my $dir = "$base/$namespace/$name";
        make_path($dir, { mode => 0700 });
        chmod 0700, "$base/$namespace", $dir;
        for my $key (sort keys %{ $maps->{$name} }) {
            my $file = "$dir/$key";
            open my $fh, '>:raw', $file or die "cannot write $name/$key: $!\n";
            chmod 0400, $file;
            print $fh $maps->{$name}{$key};
            close $fh or die "cannot write $name/$key: $!\n";
        }
    }
}

1;
