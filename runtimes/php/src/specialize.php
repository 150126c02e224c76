<?php
// POST /v2/specialize (docs/runtime-contract.md): both forms, checked in the documented order
// (token, 409, body, 421, digest), then secrets and configmaps as files, the function's
// environment, and its code. Runs in the server process; the body is read here, blocking, since
// a warm instance has no calls to serve meanwhile.
declare(strict_types=1);

namespace Fizz;

const DEFAULT_CONCURRENCY = 10;
const MAX_CONCURRENCY = 10000;
const MAX_JSON_LINE_BYTES = 4 * 1024 * 1024;
const ARCHIVE_CONTENT_TYPE = 'application/vnd.fizz.specialize+tar';
const FILENAME_RE = '/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\.php$/';
const BASE64_RE = '#^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$#';
const CONFIG_NAME_RE = '/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/';
const CONFIG_KEY_RE = '/^[A-Za-z0-9._-]{1,253}$/';
const ENV_NAME_RE = '/^[A-Za-z_][A-Za-z0-9_]*$/';
const DIGEST_RE = '/^sha256:[0-9a-f]{64}$/';

final class Spec
{
    public ?string $instanceId = null;
    public array $function = [];
    public ?string $entrypoint = null;
    public int $concurrency = DEFAULT_CONCURRENCY;
    /** @var array<string,string> */
    public array $env = [];
    /** @var array<string,array<string,string>> */
    public array $secrets = [];
    /** @var array<string,array<string,string>> */
    public array $configmaps = [];
    public ?string $digest = null;
    public ?string $filename = null;
    public ?string $code = null;
}

function invalid(string $field, string $message): HttpError
{
    return new HttpError(400, 'VALIDATION_FAILED', "$field: $message", field: $field);
}

/** @throws HttpError */
function parseJsonBody(string $raw, string $what = 'body: must be JSON'): \stdClass
{
    try {
        $body = json_decode($raw, false, 64, JSON_THROW_ON_ERROR);
    } catch (\JsonException) {
        throw new HttpError(400, 'VALIDATION_FAILED', $what, field: 'body', close: true);
    }
    if (!$body instanceof \stdClass) {
        throw new HttpError(400, 'VALIDATION_FAILED', 'body: must be a JSON object', field: 'body', close: true);
    }
    return $body;
}

function isInt(mixed $v): bool
{
    return is_int($v);
}

/** The fields both forms share. @throws HttpError */
function validateCommon(\stdClass $body, bool $package): Spec
{
    $spec = new Spec();
    $id = $body->instanceId ?? null;
    if ($id !== null && (!is_string($id) || $id === '')) {
        throw invalid('instanceId', 'must be a non-empty string');
    }
    $spec->instanceId = $id;

    $fn = $body->function ?? null;
    if (!$fn instanceof \stdClass) {
        throw invalid('function', 'must be an object {namespace, name, revision}');
    }
    foreach (['namespace', 'name'] as $key) {
        if (!is_string($fn->$key ?? null) || $fn->$key === '') {
            throw invalid("function.$key", 'must be a non-empty string');
        }
    }
    // The namespace names a directory under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR.
    if (!preg_match(CONFIG_NAME_RE, $fn->namespace)) {
        throw invalid('function.namespace', 'must be a namespace name');
    }
    if (!is_int($fn->revision ?? null) || $fn->revision < 0) {
        throw invalid('function.revision', 'must be a non-negative integer');
    }
    $spec->function = ['namespace' => $fn->namespace, 'name' => $fn->name, 'revision' => $fn->revision];

    $entry = $body->entrypoint ?? null;
    if ($entry === '') {
        $entry = null;
    }
    if ($entry !== null && (!is_string($entry) || !validEntrypoint($entry, $package))) {
        $form = $package
            ? "'fn', 'file.fn', 'file.php::fn' or 'file.php' (file may name a subdirectory: 'lib/app.fn')"
            : "'fn', 'file.fn', 'file.php::fn' or 'file.php'";
        throw invalid('entrypoint', "must be $form");
    }
    $spec->entrypoint = $entry;

    $concurrency = $body->concurrency ?? null;
    if ($concurrency !== null) {
        if (!is_int($concurrency) || $concurrency < 1 || $concurrency > MAX_CONCURRENCY) {
            throw invalid('concurrency', 'must be an integer between 1 and ' . MAX_CONCURRENCY);
        }
        $spec->concurrency = $concurrency;
    }

    $env = $body->env ?? null;
    if ($env !== null) {
        if (!$env instanceof \stdClass) {
            throw invalid('env', 'must be an object of strings');
        }
        foreach (get_object_vars($env) as $key => $value) {
            if (!preg_match(ENV_NAME_RE, (string) $key)) {
                throw invalid("env.$key", 'is not a valid variable name');
            }
            if (!is_string($value)) {
                throw invalid("env.$key", 'must be a string');
            }
            $spec->env[(string) $key] = $value;
        }
    }
    $spec->secrets = configData($body->secrets ?? null, 'secrets');
    $spec->configmaps = configData($body->configmaps ?? null, 'configmaps');
    return $spec;
}

function validEntrypoint(string $entry, bool $package): bool
{
    $file = $package ? '[A-Za-z0-9_][A-Za-z0-9_.\/-]*' : '[A-Za-z0-9_][A-Za-z0-9_.-]*';
    $fn = '[A-Za-z_\\\\][A-Za-z0-9_\\\\]*';
    if (!preg_match("/^(?:(?:$file)(?:\\.|::))?$fn$/", $entry) && !preg_match("/^$file\\.php$/", $entry)) {
        return false;
    }
    if ($package) {
        $module = str_contains($entry, '::') ? explode('::', $entry)[0] : $entry;
        foreach (explode('/', $module) as $part) {
            if ($part === '' || $part === '.' || $part === '..') {
                return false;
            }
        }
    }
    return true;
}

/** `{name: {key: base64}}`. Messages name the field, never a value: these are secrets. */
function configData(mixed $data, string $field): array
{
    if ($data === null) {
        return [];
    }
    if (!$data instanceof \stdClass) {
        throw invalid($field, 'must be an object {name: {key: base64}}');
    }
    $out = [];
    foreach (get_object_vars($data) as $name => $keys) {
        $name = (string) $name;
        if (!preg_match(CONFIG_NAME_RE, $name)) {
            throw invalid("$field.$name", 'is not a valid name');
        }
        if (!$keys instanceof \stdClass) {
            throw invalid("$field.$name", 'must be an object {key: base64}');
        }
        foreach (get_object_vars($keys) as $key => $value) {
            $key = (string) $key;
            if (!preg_match(CONFIG_KEY_RE, $key) || $key === '.' || $key === '..') {
                throw invalid("$field.$name.$key", "is not a valid key (letters, digits, '-', '_', '.')");
            }
            if (!is_string($value) || !preg_match(BASE64_RE, $value)) {
                throw invalid("$field.$name.$key", 'must be base64');
            }
            $out[$name][$key] = base64_decode($value, true);
        }
        $out[$name] ??= [];
    }
    return $out;
}

/** The JSON form's body. @throws HttpError */
function validateJsonForm(\stdClass $body): Spec
{
    $spec = validateCommon($body, false);
    $filename = $body->filename ?? null;
    if (!is_string($filename) || !preg_match(FILENAME_RE, $filename)) {
        throw invalid('filename', 'must be a file name (no directory) ending in .php');
    }
    $code = $body->code ?? null;
    $decoded = is_string($code) && preg_match(BASE64_RE, $code) ? base64_decode($code, true) : false;
    if ($decoded === false) {
        throw invalid('code', "must be the file's content in base64");
    }
    $digest = $body->digest ?? null;
    if ($digest !== null && (!is_string($digest) || !preg_match(DIGEST_RE, $digest))) {
        throw invalid('digest', 'must be sha256:<64 lowercase hex digits>');
    }
    $spec->filename = $filename;
    $spec->code = $decoded;
    $spec->digest = $digest;
    return $spec;
}

/** The archive form's first line. @throws HttpError */
function validateArchiveLine(\stdClass $body): Spec
{
    $spec = validateCommon($body, true);
    if (property_exists($body, 'code')) {
        throw invalid('code', 'not allowed: the code is the archive that follows');
    }
    if (property_exists($body, 'filename')) {
        throw invalid('filename', 'not allowed with an archive');
    }
    $digest = $body->digest ?? null;
    if (!is_string($digest) || !preg_match(DIGEST_RE, $digest)) {
        throw invalid('digest', 'is required: sha256:<64 lowercase hex digits> of the archive');
    }
    $spec->digest = $digest;
    return $spec;
}

/**
 * The JSON form, its body read. Returns the answer.
 * @return array{int, list<array{string,string}>, string}
 * @throws HttpError
 */
function specializeJson(Instance $instance, string $raw): array
{
    $spec = validateJsonForm(parseJsonBody($raw));
    if ($spec->digest !== null) {
        $actual = 'sha256:' . hash('sha256', $spec->code);
        if (!hash_equals($spec->digest, $actual)) {
            throw new HttpError(400, 'DIGEST_MISMATCH', "code: hashes to $actual, not {$spec->digest}; not loaded", field: 'digest');
        }
    }
    $instance->mustBeFor($spec->instanceId);
    $instance->mustBeWarm();
    $dir = $instance->workdir();
    $path = "$dir/{$spec->filename}";
    if (@file_put_contents($path, $spec->code) === false || !chmod($path, 0600)) {
        throw new HttpError(500, 'INTERNAL', "specialize failed: cannot write $path", retryable: true);
    }
    return activate($instance, $spec, $dir, $dir, $spec->filename);
}

/**
 * The archive form, after the token and the 409 check: the line, 421, then the archive, streamed
 * from $next (the body's pieces) into <workdir>/fn/.
 * @param \Closure(): ?string $next
 * @return array{int, list<array{string,string}>, string}
 * @throws HttpError
 */
function specializeArchive(Instance $instance, \Closure $next): array
{
    $buffer = '';
    while (($newline = strpos($buffer, "\n")) === false) {
        if (strlen($buffer) > MAX_JSON_LINE_BYTES) {
            throw new HttpError(400, 'VALIDATION_FAILED', 'body: the first line is over 4 MiB', field: 'body', close: true);
        }
        $piece = $next();
        if ($piece === null) {
            throw new HttpError(400, 'VALIDATION_FAILED', 'body: must start with one line of JSON ended by \n', field: 'body', close: true);
        }
        $buffer .= $piece;
    }
    if ($newline > MAX_JSON_LINE_BYTES) {
        throw new HttpError(400, 'VALIDATION_FAILED', 'body: the first line is over 4 MiB', field: 'body', close: true);
    }
    try {
        $spec = validateArchiveLine(parseJsonBody(substr($buffer, 0, $newline), 'body: the first line must be JSON'));
    } catch (HttpError $e) {
        throw new HttpError($e->status, $e->errorCode, $e->getMessage(), $e->field, close: true);
    }
    try {
        $instance->mustBeFor($spec->instanceId);
    } catch (HttpError $e) {
        throw new HttpError($e->status, $e->errorCode, $e->getMessage(), retryable: true, close: true);
    }
    require_once __DIR__ . '/archive.php';
    $workdir = $instance->workdir();
    $dir = "$workdir/fn";
    if (file_exists($dir) || !@mkdir($dir, 0700)) {
        throw new HttpError(409, 'ALREADY_SPECIALIZED', "this instance's fn/ directory already exists; an instance is specialized once", close: true);
    }
    $extract = new Extractor($dir, $instance->maxPackageBytes, $instance->maxPackageEntries);
    try {
        $extract->run(substr($buffer, $newline + 1), $next);
    } catch (\Throwable $e) {
        removeTree($dir);
        throw $e;
    }
    $digest = $extract->digest();
    if (!hash_equals($spec->digest, $digest)) {
        removeTree($dir);
        throw new HttpError(400, 'DIGEST_MISMATCH', "archive: hashes to $digest, not {$spec->digest}; not loaded", field: 'digest');
    }
    if ($extract->refusal !== null) {
        removeTree($dir);
        throw new HttpError(400, 'ARCHIVE_UNSAFE', $extract->refusal, field: 'archive');
    }
    return activate($instance, $spec, $workdir, $dir, null);
}

/**
 * The end of every specialize, once the code is in place and checked: secrets and configmaps
 * as files, the function's environment, then its code.
 * @return array{int, list<array{string,string}>, string}
 */
function activate(Instance $instance, Spec $spec, string $workdir, string $codeDir, ?string $filename): array
{
    $ref = $spec->function;
    $label = "{$ref['namespace']}/{$ref['name']}@{$ref['revision']}";
    $started = hrtime(true);
    try {
        $secrets = $instance->secretsDir ?? "$workdir/secrets";
        $configs = $instance->configsDir ?? "$workdir/configs";
        writeConfigFiles($secrets, $ref['namespace'], $spec->secrets);
        writeConfigFiles($configs, $ref['namespace'], $spec->configmaps);
        // The function's environment is in place before its top-level code runs; the two
        // directories last, so that `env` cannot point them elsewhere.
        $env = $spec->env + [];
        $env['FIZZ_SECRETS_DIR'] = $secrets;
        $env['FIZZ_CONFIGS_DIR'] = $configs;
        applyEnvironment($env, $codeDir);
        $instance->environment = $env;
        $entry = resolveEntry($codeDir, $filename, $spec->entrypoint);
        $instance->function = $ref;
        if ($entry->function !== null && $instance->loadElsewhere !== null && ($instance->loadElsewhere)($entry)) {
            // The spare loaded it and runs the first call; this process loads it before it
            // forks (ensureLoaded), off the cold start's path.
            $instance->loaded = false;
        } elseif ($entry->function !== null) {
            $GLOBALS['fizzLoading'] = $entry;
            loadFunction($entry);
            $GLOBALS['fizzLoading'] = null;
            // After the function's own top level, so that Composer packages it loaded provide
            // the PSR interfaces when they have them. A script's first call runs in the spare
            // that has them already; the server loads them before it forks a call (start, forkSpare).
            prepareContext($instance);
        }
    } catch (LoadError $e) {
        $GLOBALS['fizzLoading'] = null;
        $instance->state = 'failed';
        logLine("$label failed to load: {$e->getMessage()}");
        return jsonAnswer(500, errorPayload('FUNCTION_LOAD_FAILED', $e->getMessage()));
    } catch (\Throwable $e) {
        $instance->state = 'failed';
        logLine("$label: specialize failed: $e");
        return jsonAnswer(500, errorPayload('INTERNAL', 'specialize failed: ' . $e->getMessage(), retryable: true));
    }
    $instance->entry = $entry;
    $instance->concurrency = $spec->concurrency;
    $instance->state = 'specialized';
    $loadMs = round((hrtime(true) - $started) / 1e6, 1);
    $form = $entry->function === null ? 'script' : "function {$entry->function}";
    logLine("specialized $label ({$entry->relative}, $form) in {$loadMs}ms");
    return jsonAnswer(200, ['status' => 'specialized', 'loadMs' => $loadMs]);
}

/** The function's environment and working directory, in this process. @param array<string,string> $env */
function applyEnvironment(array $env, string $codeDir): void
{
    foreach ($env as $key => $value) {
        putenv("$key=$value");
        $_ENV[$key] = $value;
        $_SERVER[$key] = $value;
    }
    chdir($codeDir);
}

/** The context classes and the logger, once, in the process that forks calls. */
function prepareContext(Instance $instance): void
{
    loadContextClasses();
    $instance->logger ??= new Context\Logger();
}

/** The PSR interfaces (unless the function's own packages brought them) and the context classes. */
function loadContextClasses(): void
{
    require_once __DIR__ . '/context/psr-interfaces.php';
    require_once __DIR__ . '/context/psr7.php';
    require_once __DIR__ . '/context/logger.php';
}

/**
 * `<base>/<namespace>/<name>/<key>`, files 0400 created exclusively, directories 0700 (not 0500,
 * so whoever removes the instance's directory can unlink them). Names and keys were validated.
 */
function writeConfigFiles(string $base, string $namespace, array $data): void
{
    foreach ($data as $name => $keys) {
        $dir = "$base/$namespace/$name";
        if (!is_dir($dir) && !@mkdir($dir, 0700, true)) {
            throw new \RuntimeException("cannot create $dir");
        }
        foreach ($keys as $key => $value) {
            $old = umask(0377);
            try {
                $file = @fopen("$dir/$key", 'xb');
            } finally {
                umask($old);
            }
            if ($file === false || fwrite($file, $value) !== strlen($value) || !fclose($file)) {
                throw new \RuntimeException("cannot write $dir/$key");
            }
        }
    }
}

function removeTree(string $path): void
{
    if (is_link($path) || is_file($path)) {
        @unlink($path);
        return;
    }
    if (!is_dir($path)) {
        return;
    }
    @chmod($path, 0700);
    foreach (scandir($path) ?: [] as $name) {
        if ($name !== '.' && $name !== '..') {
            removeTree("$path/$name");
        }
    }
    @rmdir($path);
}
