// Secrets and configmaps as files (docs/runtime-contract.md): <base>/<namespace>/<name>/<key>,
// written before the function loads. Values are never logged and never put in the environment.
using System;
using System.Collections.Generic;
using System.IO;

namespace Fizz.Dotnet
{
    internal static class ConfigFiles
    {
        /// <summary>Files 0400; directories this creates 0700 (not 0500: whoever removes the
        /// instance's directory must be able to unlink the files). An existing base directory (a
        /// Kubernetes emptyDir) is used as it is. Names and keys were validated: no '/', '.', '..'.</summary>
        public static void Write(string baseDir, string ns, Dictionary<string, Dictionary<string, byte[]>> data)
        {
            foreach (var entry in data)
            {
                var dir = MakeDirs(baseDir, ns, entry.Key);
                foreach (var kv in entry.Value)
                {
                    var path = Path.Combine(dir, kv.Key);
                    using (var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
                    {
                        Native.Chmod(path, Convert.ToInt32("400", 8));
                        f.Write(kv.Value, 0, kv.Value.Length);
                    }
                }
            }
        }

        private static string MakeDirs(string baseDir, string ns, string name)
        {
            if (!Directory.Exists(baseDir))
            {
                Directory.CreateDirectory(baseDir);
                Native.Chmod(baseDir, Convert.ToInt32("700", 8));
            }
            var path = baseDir;
            foreach (var part in new[] { ns, name })
            {
                path = Path.Combine(path, part);
                if (Directory.Exists(path)) continue;
                Directory.CreateDirectory(path);
                Native.Chmod(path, Convert.ToInt32("700", 8));
            }
            return path;
        }
    }
}
