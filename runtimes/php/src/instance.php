<?php
// The instance: its configuration (read once from the process environment, the specialize token
// taken out of it before any user code can run), its state (warm -> specialized | failed, once),
// and what a specialize sets: the function's entry, environment, secrets and configmaps.
declare(strict_types=1);

namespace Fizz;

use Fizz\Context\Logger;

final class Instance
{
    public readonly int $port;
    public readonly string $host;
    public readonly ?string $instanceId;
    public readonly ?string $token;
    public readonly ?string $workdir;
    public readonly ?string $secretsDir;
    public readonly ?string $configsDir;
    public readonly int $maxBody;
    public readonly int $maxPackageBytes;
    public readonly int $maxPackageEntries;
    public readonly bool $parentStdin;

    public string $state = 'warm'; // warm | specialized | failed
    public ?Entry $entry = null;
    public array $function = [];
    public int $concurrency = 0;
    public ?Logger $logger = null;
    /**
     * Loads a handler file somewhere else first (the warm spare, see calls.php): true when it
     * did, so the server's own load waits (ensureLoaded); false when it could not try.
     * @var (\Closure(Entry): bool)|null
     */
    public ?\Closure $loadElsewhere = null;
    /** Whether the server process has the function (false while only the spare has it). */
    public bool $loaded = true;
    /** @var array<string,string> what specialize added to the environment */
    public array $environment = [];

    public function __construct()
    {
        // Read once, then removed from every place PHP shows the environment: getenv(), $_ENV,
        // $_SERVER (the C environment, which child processes inherit, included).
        $token = getenv('FIZZ_SPECIALIZE_TOKEN');
        putenv('FIZZ_SPECIALIZE_TOKEN');
        unset($_ENV['FIZZ_SPECIALIZE_TOKEN'], $_SERVER['FIZZ_SPECIALIZE_TOKEN']);
        $this->token = is_string($token) && $token !== '' ? $token : null;

        $this->port = envInt('PORT', 8888);
        $this->host = envString('HOST') ?? '0.0.0.0';
        $this->instanceId = envString('FIZZ_INSTANCE_ID');
        $this->workdir = absolute(envString('FIZZ_WORKDIR'));
        $this->secretsDir = absolute(envString('FIZZ_SECRETS_DIR'));
        $this->configsDir = absolute(envString('FIZZ_CONFIGS_DIR'));
        $this->maxBody = envInt('FIZZ_MAX_BODY_BYTES', 64 * 1024 * 1024);
        $this->maxPackageBytes = envInt('FIZZ_MAX_PACKAGE_BYTES', 2 * 1024 * 1024 * 1024);
        $this->maxPackageEntries = envInt('FIZZ_MAX_PACKAGE_ENTRIES', 100000);
        $this->parentStdin = envString('FIZZ_PARENT_STDIN') === '1';
    }

    public function authorized(?string $given): bool
    {
        return $this->token === null || ($given !== null && hash_equals($this->token, $given));
    }

    /** @throws HttpError 409 once the instance is no longer warm */
    public function mustBeWarm(): void
    {
        if ($this->state !== 'warm') {
            $what = $this->state === 'failed' ? 'failed to load its function' : 'is already specialized';
            throw new HttpError(409, 'ALREADY_SPECIALIZED', "this instance $what; an instance is specialized once");
        }
    }

    /** @throws HttpError 421 */
    public function mustBeFor(?string $instanceId): void
    {
        if ($instanceId !== null && $this->instanceId !== null && $instanceId !== $this->instanceId) {
            throw new HttpError(421, 'MISDIRECTED', "this is instance {$this->instanceId}, not $instanceId", retryable: true);
        }
    }

    /** The work directory, made on first use: FIZZ_WORKDIR or a fresh private one under TMPDIR. */
    public function workdir(): string
    {
        static $made = null;
        if ($made !== null) {
            return $made;
        }
        if ($this->workdir !== null) {
            if (!is_dir($this->workdir) && !@mkdir($this->workdir, 0700, true)) {
                throw new \RuntimeException("cannot create the work directory {$this->workdir}");
            }
            return $made = $this->workdir;
        }
        $base = rtrim(envString('TMPDIR') ?? sys_get_temp_dir(), '/');
        for (;;) {
            $path = "$base/fizz-fn-" . bin2hex(random_bytes(8));
            if (@mkdir($path, 0700)) {
                return $made = $path;
            }
            if (!is_dir($base)) {
                throw new \RuntimeException("cannot create a work directory under $base");
            }
        }
    }
}

function envString(string $name): ?string
{
    $value = getenv($name);
    return is_string($value) && $value !== '' ? $value : null;
}

function envInt(string $name, int $default): int
{
    $raw = envString($name);
    if ($raw === null) {
        return $default;
    }
    if (!preg_match('/^[0-9]{1,18}$/', $raw)) {
        fwrite(STDERR, "[fizz] $name=$raw is not a valid non-negative integer\n");
        exit(2);
    }
    return (int) $raw;
}

function absolute(?string $path): ?string
{
    if ($path === null) {
        return null;
    }
    $path = str_starts_with($path, '/') ? $path : getcwd() . '/' . $path;
    return rtrim($path, '/') === '' ? '/' : rtrim($path, '/');
}
