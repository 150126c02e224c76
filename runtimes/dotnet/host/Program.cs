// Fizz environment loader for C# functions on Mono; the contract is docs/runtime-contract.md.
//
// The process starts generic ("warm"), is specialized exactly once with a package the builder
// compiled (function.dll), and from then on serves only that function. Trust: POST
// /v2/specialize needs the token the poolkeeper gave this process (FIZZ_SPECIALIZE_TOKEN, read
// once and removed from the environment before any user code runs) and code that hashes to its
// digest; a second specialize is refused.
using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace Fizz.Dotnet
{
    internal static class Program
    {
        /// <summary>Kubernetes' default terminationGracePeriodSeconds is 30: finish inside it.</summary>
        private const int ShutdownGraceMs = 25000;
        private static Instance _instance;
        // IPv4 (the platform's HOST values): libc sockets; anything else: System.Net.Sockets.
        private static NativeListener _native;
        private static TcpListener _listener;
        private static int _shuttingDown;

        public static int Main(string[] args)
        {
            EnsureDebugger(args);
            var started = Stopwatch.StartNew();
            CallMarks.Install();
            // A function's own thread that throws ends the process (.NET's policy); say why first.
            AppDomain.CurrentDomain.UnhandledException += (sender, e) =>
                Console.Error.WriteLine("[fizz] unhandled exception, the instance exits: " +
                    (e.ExceptionObject is Exception ? Loader.Describe((Exception)e.ExceptionObject) : Convert.ToString(e.ExceptionObject)));
            var config = ReadConfig();
            if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: config read " + started.Elapsed.TotalMilliseconds);
            config.Load = (dir, spec) => Loader.LoadPackage(dir, spec.Entrypoint);
            config.Enter = EnterFunction;
            _instance = new Instance(config);

            // While generic: run a specialize and calls through the whole pipeline on a private
            // throwaway instance, so that the first real ones pay no JIT for this code.
            var listening = new ManualResetEvent(false);
            new Thread(() => Rehearsal.Run(config, () => _instance.State != Instance.Warm || _instance.Draining, listening))
                { IsBackground = true, Name = "rehearsal" }.Start();

            var port = IntFromEnv("PORT", 8888);
            var host = Environment.GetEnvironmentVariable("HOST");
            IPAddress address;
            if (string.IsNullOrEmpty(host)) address = IPAddress.Any;
            else if (!IPAddress.TryParse(host, out address))
            {
                var found = Dns.GetHostAddresses(host);
                address = found.Length > 0 ? found[0] : IPAddress.Loopback;
            }
            try
            {
                if (address.AddressFamily == AddressFamily.InterNetwork)
                {
                    _native = new NativeListener(address, (int)port, 512);
                }
                else
                {
                    _listener = new TcpListener(address, (int)port);
                    _listener.Start(512);
                }
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("[fizz] cannot listen on " + address + ":" + port + ": " + e.Message);
                return 1;
            }
            if (Loader.Trace) Console.Error.WriteLine("[fizz] trace: listening " + started.Elapsed.TotalMilliseconds);
            for (var i = 0; i < IdleAcceptors; i++) StartAcceptor();
            var asId = config.InstanceId == null ? "" : " as " + config.InstanceId;
            config.Log("[fizz] dotnet runtime listening on " + address + ":" + port + asId + " (" +
                started.ElapsedMilliseconds + "ms)");

            if (Environment.GetEnvironmentVariable("FIZZ_PARENT_STDIN") == "1")
                new Thread(WatchStdin) { IsBackground = true, Name = "stdin" }.Start();
            var signals = new Thread(WatchSignals) { IsBackground = true, Name = "signals" };
            signals.Start();
            listening.Set();
            Thread.Sleep(Timeout.Infinite);
            return 0;
        }

        /// <summary>Line numbers in stack traces (a function's error names its file and line) need
        /// Mono's --debug, which only the command line can turn on; inlining is off so the frame
        /// named is the one that threw. Started without it, the runtime replaces itself (same pid,
        /// before reading anything) with `mono --debug -O=-inline`.</summary>
        private static void EnsureDebugger(string[] args)
        {
            if (new StackFrame(0, true).GetFileLineNumber() > 0) return;
            if (Environment.GetEnvironmentVariable("FIZZ_DOTNET_NO_REEXEC") == "1") return;
            var exe = typeof(Program).Assembly.Location;
            var argv = new string[4 + args.Length];
            argv[0] = "mono";
            argv[1] = "--debug";
            argv[2] = "-O=-inline";
            argv[3] = exe;
            Array.Copy(args, 0, argv, 4, args.Length);
            Environment.SetEnvironmentVariable("FIZZ_DOTNET_NO_REEXEC", "1");
            Native.Exec("/proc/self/exe", argv);
            Console.Error.WriteLine("[fizz] cannot restart with --debug; stack traces will lack line numbers");
        }

        private static Config ReadConfig()
        {
            var token = Environment.GetEnvironmentVariable("FIZZ_SPECIALIZE_TOKEN");
            Environment.SetEnvironmentVariable("FIZZ_SPECIALIZE_TOKEN", null);
            Environment.SetEnvironmentVariable("FIZZ_DOTNET_NO_REEXEC", null);
            return new Config
            {
                InstanceId = NonEmpty("FIZZ_INSTANCE_ID"),
                SpecializeToken = string.IsNullOrEmpty(token) ? null : token,
                Workdir = NonEmpty("FIZZ_WORKDIR"),
                SecretsDir = Absolute(NonEmpty("FIZZ_SECRETS_DIR")),
                ConfigsDir = Absolute(NonEmpty("FIZZ_CONFIGS_DIR")),
                MaxBodyBytes = IntFromEnv("FIZZ_MAX_BODY_BYTES", 64L * 1024 * 1024),
                MaxPackageBytes = IntFromEnv("FIZZ_MAX_PACKAGE_BYTES", 2L * 1024 * 1024 * 1024),
                MaxPackageEntries = IntFromEnv("FIZZ_MAX_PACKAGE_ENTRIES", 100000),
            };
        }

        private static string NonEmpty(string name)
        {
            var v = Environment.GetEnvironmentVariable(name);
            return string.IsNullOrEmpty(v) ? null : v;
        }

        private static string Absolute(string dir)
        {
            return dir == null ? null : Path.GetFullPath(dir);
        }

        private static long IntFromEnv(string name, long fallback)
        {
            var raw = Environment.GetEnvironmentVariable(name);
            if (string.IsNullOrEmpty(raw)) return fallback;
            long value;
            if (!long.TryParse(raw, System.Globalization.NumberStyles.None, null, out value))
            {
                Console.Error.WriteLine("[fizz] " + name + "=" + raw + " is not a valid non-negative integer");
                Environment.Exit(2);
            }
            return value;
        }

        /// <summary>The function's environment and working directory, before its code loads.</summary>
        private static void EnterFunction(SpecializeSpec spec, string dir)
        {
            foreach (var kv in spec.Env) Environment.SetEnvironmentVariable(kv.Key, kv.Value);
            Directory.SetCurrentDirectory(dir);
        }

        // Acceptors: threads blocked in accept(2). The one that gets a connection serves it itself
        // (no hand-over to another thread on the cold path) and, if it was the last idle one,
        // starts a replacement first. Between connections a thread accepts again, or ends when
        // enough others are idle.
        private const int IdleAcceptors = 2;
        private static int _idle;

        private static void StartAcceptor()
        {
            Interlocked.Increment(ref _idle);
            new Thread(AcceptLoop) { IsBackground = true, Name = "conn" }.Start();
        }

        private static void AcceptLoop()
        {
            for (;;)
            {
                Stream stream;
                ITransport transport;
                try
                {
                    if (_native != null)
                    {
                        var native = _native.Accept();
                        if (native == null) throw new ObjectDisposedException("listener");
                        stream = native;
                        transport = native;
                    }
                    else
                    {
                        var socket = _listener.AcceptSocket();
                        socket.NoDelay = true;
                        stream = new NetworkStream(socket, true);
                        transport = new ManagedTransport(socket);
                    }
                }
                catch (Exception)
                {
                    Interlocked.Decrement(ref _idle);
                    return; // stopped on shutdown
                }
                if (Interlocked.Decrement(ref _idle) < 1) StartAcceptor();
                // An idle keep-alive connection is closed after this (Node's server: 65 s).
                transport.SetReceiveTimeout(65000);
                new Connection(_instance, stream, transport).Serve();
                if (Interlocked.Increment(ref _idle) > IdleAcceptors)
                {
                    Interlocked.Decrement(ref _idle);
                    return;
                }
            }
        }

        private static void WatchSignals()
        {
            IntPtr[] infos;
            try
            {
                infos = Native.InstallSignals(Native.SIGTERM, Native.SIGINT);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("[fizz] cannot handle SIGTERM (" + e.Message + "); shutdown will not drain");
                return;
            }
            for (;;)
            {
                var which = Native.WaitForSignal(infos, -1);
                if (which < 0) continue;
                new Thread(() => Shutdown(which == 0 ? "SIGTERM" : "SIGINT", true)) { IsBackground = true }.Start();
            }
        }

        private static void WatchStdin()
        {
            try
            {
                var stdin = Console.OpenStandardInput();
                var buf = new byte[256];
                while (stdin.Read(buf, 0, buf.Length) > 0) { }
                Shutdown("parent closed stdin", false);
            }
            catch (Exception)
            {
                Shutdown("stdin failed", false);
            }
        }

        /// <summary>Stop accepting, finish the calls in flight, exit 0. A repeated signal means
        /// "now"; stdin closing after a SIGTERM changes nothing.</summary>
        private static void Shutdown(string reason, bool isSignal)
        {
            if (Interlocked.Exchange(ref _shuttingDown, 1) == 1)
            {
                if (!isSignal) return;
                Console.Error.WriteLine("[fizz] " + reason + " again: exiting without waiting");
                Environment.Exit(1);
            }
            Console.Error.WriteLine("[fizz] " + reason + ": no new connections; finishing in-flight calls");
            try
            {
                if (_native != null) _native.Stop();
                else _listener.Stop();
            }
            catch (Exception)
            {
                // stopped already
            }
            var drained = _instance.Drain(ShutdownGraceMs);
            if (!drained) Console.Error.WriteLine("[fizz] calls still running after " + ShutdownGraceMs + "ms; exiting");
            Console.Out.Flush();
            Environment.Exit(drained ? 0 : 1);
        }
    }
}
