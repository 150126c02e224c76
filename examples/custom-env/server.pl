#!/usr/bin/perl
# A Fizz environment for Perl 5 (docs/runtime-contract.md, JSON form only): a custom environment
# built outside the platform, to show what one takes. Core modules only.
#
# One process, one thread: an event loop (IO::Select) reads requests and answers everything the
# platform asks (health, specialize, refusals) itself; each call of the function runs in a forked
# child, which writes the response on the connection and exits. Forking is what lets a
# single-threaded loader keep its concurrency limit (calls in flight plus an equal queue, then 429)
# and keep answering while a function sleeps. A call's slot is freed when its function returns,
# whether or not its client is still there: the child says so on a pipe before it writes the
# answer, so a client that sends its next call as soon as it has the answer finds the slot free
# (freed at the child's exit instead, that call could meet a slot not yet reaped and get 429).
use strict;
use warnings;
use FindBin ();
use lib "$FindBin::RealBin/lib";
use File::Path qw(make_path);
use File::Spec ();
use File::Temp qw(tempdir);
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(time);
use Fizz::Function qw(load_function build_context call_function);
use Fizz::Http qw(parse_head read_body send_response send_error json_encode);
use Fizz::Specialize qw(token_ok check_body write_config);

$| = 1;    # the function's output reaches the platform's log as it is printed
STDERR->autoflush(1);

my $TOKEN = delete $ENV{FIZZ_SPECIALIZE_TOKEN};    # before any user code can read it
my $INSTANCE_ID = $ENV{FIZZ_INSTANCE_ID};
my $MAX_BODY = ($ENV{FIZZ_MAX_BODY_BYTES} // '') =~ /^\d+$/ ? $ENV{FIZZ_MAX_BODY_BYTES} : 67108864;
my $WORKDIR = File::Spec->rel2abs($ENV{FIZZ_WORKDIR} || tempdir('fizz-perl-XXXXXX', TMPDIR => 1));
my $SECRETS_DIR = File::Spec->rel2abs($ENV{FIZZ_SECRETS_DIR} || "$WORKDIR/secrets");
my $CONFIGS_DIR = File::Spec->rel2abs($ENV{FIZZ_CONFIGS_DIR} || "$WORKDIR/configs");
my $ARCHIVE_TYPE = 'application/vnd.fizz.specialize+tar';

my %instance = (state => 'warm', fn => undef, function => undef, concurrency => 10);
my ($draining, $inflight, %conns, %children, %released, @queue) = (0, 0);
# Children write their pid (4 bytes: one write, atomic on a pipe) here when their function returns.
pipe(my $done_r, my $done_w) or die "pipe: $!";
$done_r->blocking(0);

sub logline { print STDERR "[fizz-perl] @_\n" }

my $listener = IO::Socket::INET->new(
    LocalAddr => $ENV{HOST} // '0.0.0.0', LocalPort => $ENV{PORT} // 8888,
    Listen => 128, ReuseAddr => 1, Proto => 'tcp',
) or die "cannot listen: $@\n";
$SIG{PIPE} = 'IGNORE';
$SIG{TERM} = sub { $draining = 1 };
$SIG{CHLD} = sub { };    # only to wake the loop
logline("listening on " . ($ENV{HOST} // '0.0.0.0') . ":" . $listener->sockport);

sub close_conn {
    my ($c) = @_;
    delete $conns{ fileno $c->{sock} // -1 };
    close $c->{sock};
}

# Answers from the loop itself, keeping the connection unless told (or the client said) not to.
sub answer_error {
    my ($c, $req, $status, $code, $message, %opt) = @_;
    my $close = $opt{close} || !$req->{keep_alive} || $draining;
    my $sent = send_error($c->{sock}, $status, $code, $message, %opt, close => $close);
    close_conn($c) if $close || !$sent;
}

sub answer_json {
    my ($c, $req, $status, $value) = @_;
    my $close = !$req->{keep_alive} || $draining;
    my $sent = send_response($c->{sock}, $status, [['Content-Type', 'application/json']],
        json_encode($value), $close);
    close_conn($c) if $close || !$sent;
}

sub is_internal {
    my ($req) = @_;
    return 0 if exists $req->{headers}{'x-fizz-instance'};
    my $route = "$req->{method} $req->{path}";
    return $route eq 'GET /healthz' || $route eq 'GET /readyz' || $route eq 'POST /v2/specialize';
}

# What can be answered from the head alone, without reading the body (which is then left unread,
# so the connection closes): true when answered.
sub answer_early {
    my ($c, $req) = @_;
    my $has_body = $req->{chunked} || $req->{length} > 0;
    if (!is_internal($req)) {
        my $target = $req->{headers}{'x-fizz-instance'};
        if (defined $target && defined $INSTANCE_ID && $target ne $INSTANCE_ID) {
            answer_error($c, $req, 421, 'MISDIRECTED', "this is instance $INSTANCE_ID, not $target",
                close => $has_body);
            return 1;
        }
        if ($instance{state} ne 'specialized') {
            answer_error($c, $req, 503, 'NOT_SPECIALIZED', 'this instance serves no function yet',
                close => $has_body, retryable => 1);
            return 1;
        }
        return 0;
    }
    return 0 unless $req->{path} eq '/v2/specialize';
    if (!token_ok($TOKEN, $req->{headers}{'x-fizz-specialize-token'})) {
        answer_error($c, $req, 401, 'UNAUTHENTICATED', 'missing or wrong specialize token',
            field => 'x-fizz-specialize-token', close => 1);
        return 1;
    }
    if ($instance{state} ne 'warm') {
        answer_error($c, $req, 409, 'ALREADY_SPECIALIZED', 'this instance was specialized already',
            close => 1);
        return 1;
    }
    if (lc($req->{headers}{'content-type'} // '') =~ /^\Q$ARCHIVE_TYPE\E/) {
        # A package is code this environment cannot load: FUNCTION_LOAD_FAILED, which the
        # platform reports to the user as it is and does not retry on other instances (a 400
        # would read as a broken instance). The archive is never read.
        $instance{state} = 'failed';
        logline('refused a package: this environment loads single files only');
        answer_error($c, $req, 500, 'FUNCTION_LOAD_FAILED',
            'the perl environment loads single files only: deploy the function with '
            . '`fizz fn create --code <file>.pl`, not as a package', close => 1);
        return 1;
    }
    return 0;
}

sub specialize {
    my ($c, $req, $body) = @_;
    my $decoded = eval { JSON::PP->new->utf8->decode($body) };
    return answer_error($c, $req, 400, 'VALIDATION_FAILED', 'body is not JSON', field => 'body')
        unless defined $decoded;
    my ($spec, $refusal) = check_body($decoded, $INSTANCE_ID);
    if ($refusal) {
        my ($status, $code, $message, $field) = @$refusal;
        return answer_error($c, $req, $status, $code, $message, field => $field);
    }
    my $started = time;
    my $failed = eval {
        make_path($WORKDIR, { mode => 0700 });
        my $path = "$WORKDIR/$spec->{filename}";
        open my $fh, '>:raw', $path or die "cannot write $spec->{filename}: $!\n";
        print $fh $spec->{code};
        close $fh or die "cannot write $spec->{filename}: $!\n";
        my $ns = $spec->{function}{namespace};
        write_config($SECRETS_DIR, $ns, $spec->{secrets});
        write_config($CONFIGS_DIR, $ns, $spec->{configmaps});
        for my $name (keys %{ $spec->{env} }) {
            my $value = $spec->{env}{$name};
            utf8::encode($value);
            $ENV{$name} = $value;
        }
        @ENV{qw(FIZZ_SECRETS_DIR FIZZ_CONFIGS_DIR)} = ($SECRETS_DIR, $CONFIGS_DIR);
        chdir $WORKDIR or die "cannot enter $WORKDIR: $!\n";
        my ($fn, $error) = load_function($path, $spec->{filename}, $spec->{entrypoint});
        die { load => $error } if $error;
        $instance{fn} = $fn;
        0;
    } // 1;
    my $error = $@;
    if ($failed) {
        $instance{state} = 'failed';
        my $message = ref $error eq 'HASH' ? $error->{load} : "$error";
        $message =~ s/\s+$//;
        logline("function failed to load: $message");
        return answer_error($c, $req, 500, 'FUNCTION_LOAD_FAILED', $message);
    }
    @instance{qw(state function concurrency)} = ('specialized', $spec->{function}, $spec->{concurrency});
    my $f = $spec->{function};
    logline("specialized $f->{namespace}/$f->{name}\@$f->{revision}");
    my $ms = int((time - $started) * 10000) / 10;
    return answer_json($c, $req, 200, { status => 'specialized', loadMs => $ms });
}

# One call, in a child: the function runs there and its answer goes straight to the client.
sub start_call {
    my ($c, $req, $body) = @_;
    my $close = !$req->{keep_alive} || $draining;
    my $pid = fork;
    if (!defined $pid) {
        return answer_error($c, $req, 503, 'INSTANCE_BUSY', "cannot fork: $!", retryable => 1,
            retry_after => 1);
    }
    if ($pid == 0) {
        @SIG{qw(TERM CHLD)} = ('IGNORE', 'DEFAULT');    # a call in flight always finishes
        # Only this call's connection stays open here: a connection the loop closes must not
        # linger in a child until it exits.
        close $listener if $listener;
        close $done_r;
        $_ != $c && close $_->{sock} for values %conns;
        my $context = build_context($req, $body, $instance{function});
        my ($kind, @answer) = call_function($instance{fn}, $context);
        syswrite($done_w, pack('N', $$));    # the slot is free from here, before the client knows
        if ($kind eq 'ok') {
            send_response($c->{sock}, @answer, $close);
        } else {
            logline("function error (request $context->{request_id}): $answer[0]");
            send_error($c->{sock}, 500, 'FUNCTION_ERROR', $answer[0], close => $close);
        }
        STDOUT->flush;
        _exit(0);
    }
    $inflight++;
    $c->{busy} = 1;
    $c->{close_after} = $close;
    $children{$pid} = $c;
}

sub dispatch {
    my ($c, $req, $body) = @_;
    if (is_internal($req)) {
        return answer_json($c, $req, 200, { status => 'ok', state => $instance{state} })
            if $req->{path} eq '/healthz';
        if ($req->{path} eq '/readyz') {
            my $ready = $instance{state} eq 'specialized' && !$draining;
            return answer_json($c, $req, $ready ? 200 : 503, { ready => $ready ? JSON::PP::true : JSON::PP::false });
        }
        return specialize($c, $req, $body);
    }
    return start_call($c, $req, $body) if $inflight < $instance{concurrency};
    if (@queue < $instance{concurrency}) {
        $c->{busy} = 1;
        push @queue, [$c, $req, $body];
        return;
    }
    answer_error($c, $req, 429, 'INSTANCE_BUSY', "$inflight calls running and " . scalar(@queue)
        . ' queued', retryable => 1, retry_after => 1);
}

# Takes every complete request out of the connection's buffer, in order.
sub process {
    my ($c) = @_;
    while (!$c->{busy} && $conns{ fileno $c->{sock} // -1 }) {
        if (!$c->{req}) {
            my $req = parse_head(\$c->{buf}) // return;
            if ($req->{error}) {
                send_error($c->{sock}, $req->{status}, 'BAD_REQUEST', $req->{error}, close => 1);
                return close_conn($c);
            }
            substr($c->{buf}, 0, $req->{head_length}, '');
            next if answer_early($c, $req);
            $c->{req} = $req;
            # curl asks before sending a large body; the answers above would have refused it.
            syswrite($c->{sock}, "HTTP/1.1 100 Continue\r\n\r\n")
                if lc($req->{headers}{expect} // '') eq '100-continue';
        }
        my $req = $c->{req};
        my ($status, $body, $used) = read_body($req, \$c->{buf}, $MAX_BODY);
        return if $status eq 'more';
        if ($status ne 'done') {
            my $large = $status eq 'too_large';
            return answer_error($c, $req, $large ? 413 : 400, $large ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST',
                $large ? "body over $MAX_BODY bytes" : 'malformed chunked body', close => 1);
        }
        substr($c->{buf}, 0, $used, '');
        $c->{req} = undef;
        dispatch($c, $req, $body);
    }
}

# A call's slot goes back when its child says its function returned (read before any request that
# came in meanwhile is looked at), or at the latest when the child is reaped.
sub release {
    my ($pid) = @_;
    return if !$children{$pid} || $released{$pid}++;
    $inflight--;
}

sub reap {
    while (sysread($done_r, my $done, 4096)) {
        release($_) for unpack('N*', $done);
    }
    while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
        release($pid);
        delete $released{$pid};
        my $c = delete $children{$pid} or next;
        $c->{busy} = 0;
        if ($c->{close_after} || $draining) { close_conn($c) } else { process($c) }
    }
    while (@queue && $inflight < $instance{concurrency}) {
        my ($c, $req, $body) = @{ shift @queue };
        $c->{busy} = 0;
        start_call($c, $req, $body);
    }
}

my $stdin_open = ($ENV{FIZZ_PARENT_STDIN} // '') eq '1';
while (1) {
    reap();
    if ($draining) {
        if ($listener) {
            logline('draining: finishing calls in flight, then exiting');
            close $listener;
            $listener = undef;
        }
        for my $c (values %conns) {
            close_conn($c) if !$c->{busy} && !$c->{req} && $c->{buf} eq '';
        }
        CORE::exit(0) if !%children && !@queue;    # every answer written, not only returned
    }
    my $select = IO::Select->new;
    $select->add($listener) if $listener;
    $select->add($done_r);
    $select->add(\*STDIN) if $stdin_open;
    $select->add($_->{sock}) for grep { !$_->{busy} } values %conns;
    my @ready = $select->can_read(0.05);
    # Slots freed meanwhile first: a request readable now came after any answer its client had.
    reap();
    for my $fh (@ready) {
        if (fileno($fh) == fileno($done_r)) {
            next;
        } elsif ($listener && $fh == $listener) {
            my $sock = $listener->accept or next;
            $conns{ fileno $sock } = { sock => $sock, buf => '', busy => 0 };
        } elsif (fileno($fh) == fileno(STDIN)) {
            my $n = sysread(STDIN, my $ignored, 4096);
            if (!$n) { $stdin_open = 0; $draining = 1 }    # the parent is gone: shut down
        } else {
            my $c = $conns{ fileno $fh } or next;
            my $n = sysread($fh, $c->{buf}, 65536, length $c->{buf});
            if (!$n) { close_conn($c); next }
            process($c);
        }
    }
}
