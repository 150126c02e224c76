// The few POSIX calls the runtime needs that Mono's class library does not offer. Debian's
// mono-runtime ships libMonoPosixHelper.so (the native half of Mono.Posix.dll) but not
// Mono.Posix.dll itself, so signals go straight to the helper's UnixSignal functions (what
// Mono.Unix.UnixSignal calls), and file modes to libc.
using System;
using System.Runtime.InteropServices;

namespace Fizz.Dotnet
{
    internal static class Native
    {
        public const int SIGINT = 2;
        public const int SIGTERM = 15;
        public const int EEXIST = 17;

        [DllImport("libc", SetLastError = true)]
        private static extern int chmod(string path, uint mode);

        [DllImport("libc", SetLastError = true)]
        private static extern int mkdir(string path, uint mode);

        [DllImport("libc", SetLastError = true)]
        private static extern int execv(string path, string[] argv);

        [DllImport("MonoPosixHelper", EntryPoint = "Mono_Unix_UnixSignal_install", SetLastError = true)]
        private static extern IntPtr SignalInstall(int signum);

        // Waits for any of the installed signals; returns the index of the one that came, or -1
        // on timeout. The callback tells the helper whether the runtime is going down.
        public delegate int ShuttingDown();

        [DllImport("MonoPosixHelper", EntryPoint = "Mono_Unix_UnixSignal_WaitAny")]
        private static extern int SignalWaitAny(IntPtr[] infos, int count, int timeoutMs, ShuttingDown shuttingDown);

        public static void Chmod(string path, int mode)
        {
            if (chmod(path, (uint)mode) != 0)
                throw new System.IO.IOException("chmod " + path + " failed: errno " + Marshal.GetLastWin32Error());
        }

        /// <summary>mkdir(2): false when the path exists already, so the caller knows it did not
        /// make it (the archive's fn/ directory must be new).</summary>
        public static bool MkdirNew(string path, int mode)
        {
            if (mkdir(path, (uint)mode) == 0) return true;
            var errno = Marshal.GetLastWin32Error();
            if (errno == EEXIST) return false;
            throw new System.IO.IOException("mkdir " + path + " failed: errno " + errno);
        }

        /// <summary>Replaces this process (same pid: the poolkeeper's signals and pipes still reach
        /// it). Returns only on failure.</summary>
        public static void Exec(string path, string[] argv)
        {
            var terminated = new string[argv.Length + 1];
            Array.Copy(argv, terminated, argv.Length);
            execv(path, terminated);
        }

        public static IntPtr[] InstallSignals(params int[] signals)
        {
            var infos = new IntPtr[signals.Length];
            for (var i = 0; i < signals.Length; i++)
            {
                infos[i] = SignalInstall(signals[i]);
                if (infos[i] == IntPtr.Zero) throw new InvalidOperationException("cannot handle signal " + signals[i]);
            }
            return infos;
        }

        private static readonly ShuttingDown NotShuttingDown = () => 0;

        public static int WaitForSignal(IntPtr[] infos, int timeoutMs)
        {
            return SignalWaitAny(infos, infos.Length, timeoutMs, NotShuttingDown);
        }
    }
}
