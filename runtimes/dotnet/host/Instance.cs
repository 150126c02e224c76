// The instance's configuration and state: warm → specialized | failed, once; the connections and
// requests it tracks for the drain on shutdown.
using System;
using System.Collections.Generic;
using System.Threading;

namespace Fizz.Dotnet
{
    internal sealed class Config
    {
        public string InstanceId;
        public string SpecializeToken;
        public string Workdir;
        public string SecretsDir;
        public string ConfigsDir;
        public long MaxBodyBytes = 64L * 1024 * 1024;
        public long MaxPackageBytes = 2L * 1024 * 1024 * 1024;
        public long MaxPackageEntries = 100000;
        /// <summary>Loads the package; the rehearsal swaps in its own built-in function.</summary>
        public Func<string, SpecializeSpec, Handler> Load;
        /// <summary>Sets the function's environment and working directory (the real instance only).</summary>
        public Action<SpecializeSpec, string> Enter;
        public Action<string> Log = line => Console.Error.WriteLine(line);
    }

    internal sealed class Instance
    {
        public const string Warm = "warm";
        public const string Specializing = "specializing";
        public const string Specialized = "specialized";
        public const string Failed = "failed";

        public readonly Config Config;
        public readonly object Lock = new object();
        public string State = Warm;
        public volatile bool Draining;
        public Handler Handler;
        public FunctionRefSpec Function;
        public Limiter Limiter;
        public int Concurrency;
        public string PackagePath;

        // Connections, to close the idle ones on shutdown, and the count of requests in progress.
        private readonly HashSet<Connection> _connections = new HashSet<Connection>();
        private int _busy;

        public Instance(Config config)
        {
            Config = config;
        }

        /// <summary>Moves warm → specializing; false when another specialize got there first.</summary>
        public bool BeginSpecialize()
        {
            lock (Lock)
            {
                if (State != Warm) return false;
                State = Specializing;
                return true;
            }
        }

        public void Track(Connection c)
        {
            lock (Lock) _connections.Add(c);
        }

        public void Untrack(Connection c)
        {
            lock (Lock)
            {
                _connections.Remove(c);
                Monitor.PulseAll(Lock);
            }
        }

        /// <summary>A request is being handled; false when draining (the connection closes).</summary>
        public bool EnterRequest(Connection c)
        {
            lock (Lock)
            {
                c.Busy = true;
                _busy++;
                return !Draining;
            }
        }

        public void LeaveRequest(Connection c)
        {
            lock (Lock)
            {
                c.Busy = false;
                _busy--;
                Monitor.PulseAll(Lock);
            }
        }

        /// <summary>Refuse new requests, close idle connections, wait for the busy ones.</summary>
        public bool Drain(int graceMs)
        {
            var deadline = DateTime.UtcNow.AddMilliseconds(graceMs);
            lock (Lock)
            {
                Draining = true;
                foreach (var c in _connections) if (!c.Busy) c.Abort();
                while (_busy > 0)
                {
                    var left = (int)(deadline - DateTime.UtcNow).TotalMilliseconds;
                    if (left <= 0) return false;
                    Monitor.Wait(Lock, left);
                }
                return true;
            }
        }
    }
}
