// Loads a package built by runtimes/dotnet/build.sh (function.dll) and finds its entry point:
// Fission's `public class FissionFunction { public string Execute(FissionContext context) }` by
// default. The call is compiled once into a DynamicMethod (new instance per call, as Fission does,
// then the method), so a call costs no reflection.
using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Threading.Tasks;
using Fission.DotNetCore.Api;

namespace Fizz.Dotnet
{
    internal delegate object Handler(FissionContext context);

    /// <summary>The code did not load: the message names the package's file and line when known.</summary>
    internal sealed class LoadError : Exception
    {
        public LoadError(string message) : base(message) { }
    }

    internal static class Loader
    {
        public const string AssemblyName = "function.dll";
        private const string DefaultClass = "FissionFunction";
        private const string DefaultMethod = "Execute";

        public static Handler LoadPackage(string dir, string entrypoint)
        {
            var path = Path.Combine(dir, AssemblyName);
            if (!File.Exists(path))
            {
                throw new LoadError("the package has no " + AssemblyName + ": C# functions are compiled by the builder " +
                    "(runtimes/dotnet/build.sh); deploy the source with `fizz fn create --src <dir>` or `--code <file>.cs`");
            }
            // Libraries the package ships (next to function.dll) load from the package.
            AppDomain.CurrentDomain.AssemblyResolve += (sender, args) =>
            {
                var file = Path.Combine(dir, new AssemblyName(args.Name).Name + ".dll");
                return File.Exists(file) ? Assembly.LoadFrom(file) : null;
            };
            Assembly assembly;
            var sw = Stopwatch.StartNew();
            try
            {
                assembly = Assembly.LoadFrom(path);
                if (Trace) Console.Error.WriteLine("[fizz] trace: LoadFrom " + sw.Elapsed.TotalMilliseconds);
            }
            catch (Exception e)
            {
                throw new LoadError(AssemblyName + ": " + e.GetType().Name + ": " + e.Message);
            }
            var method = Find(assembly, entrypoint);
            if (Trace) Console.Error.WriteLine("[fizz] trace: Find " + sw.Elapsed.TotalMilliseconds);
            var handler = Compile(method);
            if (Trace) Console.Error.WriteLine("[fizz] trace: Compile " + sw.Elapsed.TotalMilliseconds);
            return handler;
        }

        internal static readonly bool Trace = Environment.GetEnvironmentVariable("FIZZ_DOTNET_TRACE") == "1";

        /// <summary>Entry points: none → class FissionFunction, method Execute; `Name` → class Name's
        /// Execute, else method Name of FissionFunction; `A.B` → class A.B's Execute, else method
        /// B of class A (a class by its full or its simple name).</summary>
        public static MethodInfo Find(Assembly assembly, string entrypoint)
        {
            // The common cases without listing every type of the assembly.
            var direct = assembly.GetType(entrypoint ?? DefaultClass, false);
            if (direct != null && direct.IsClass && !direct.IsNested)
                return MethodOf(direct, DefaultMethod, entrypoint ?? DefaultClass);
            Type[] types;
            try
            {
                types = assembly.GetTypes();
            }
            catch (ReflectionTypeLoadException e)
            {
                var first = e.LoaderExceptions.FirstOrDefault(x => x != null);
                throw new LoadError(AssemblyName + ": a type does not load: " + (first == null ? e.Message : first.Message));
            }
            if (entrypoint == null) return MethodOf(FindClass(types, DefaultClass, true), DefaultMethod, DefaultClass);
            var cls = FindClass(types, entrypoint, false);
            if (cls != null) return MethodOf(cls, DefaultMethod, entrypoint);
            var dot = entrypoint.LastIndexOf('.');
            var className = dot < 0 ? DefaultClass : entrypoint.Substring(0, dot);
            var method = dot < 0 ? entrypoint : entrypoint.Substring(dot + 1);
            return MethodOf(FindClass(types, className, true), method, className);
        }

        private static Type FindClass(Type[] types, string name, bool required)
        {
            var matches = types.Where(t => t.IsClass && (t.FullName == name || (t.Name == name && !t.IsNested))).ToList();
            var exact = matches.Where(t => t.FullName == name).ToList();
            if (exact.Count == 1) return exact[0];
            if (matches.Count == 1) return matches[0];
            if (matches.Count > 1)
                throw new LoadError("entrypoint: more than one class named " + name + " (" +
                    string.Join(", ", matches.Select(t => t.FullName)) + "); name it with its namespace");
            if (!required) return null;
            throw new LoadError("no class " + name + " in the package (Fission's shape: public class FissionFunction " +
                "{ public string Execute(FissionContext context) })");
        }

        private static MethodInfo MethodOf(Type type, string name, string className)
        {
            var flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static;
            var candidates = type.GetMethods(flags).Where(m => m.Name == name && !m.IsGenericMethodDefinition).Where(m =>
            {
                var ps = m.GetParameters();
                return ps.Length == 0 || (ps.Length == 1 && ps[0].ParameterType == typeof(FissionContext));
            }).OrderByDescending(m => m.GetParameters().Length).ToList();
            if (candidates.Count == 0)
                throw new LoadError("class " + className + " has no public method " + name + "(FissionContext context) or " + name + "()");
            var method = candidates[0];
            if (!method.IsStatic && type.IsAbstract)
                throw new LoadError("class " + className + " is abstract: " + name + " must be static");
            if (!method.IsStatic && type.GetConstructor(Type.EmptyTypes) == null)
                throw new LoadError("class " + className + " needs a public constructor without parameters");
            return method;
        }

        /// <summary>Runs the class's static initialiser now (a failure is a load failure, naming
        /// its file and line) and compiles the call.</summary>
        public static Handler Compile(MethodInfo method)
        {
            var type = method.DeclaringType;
            try
            {
                RuntimeHelpers.RunClassConstructor(type.TypeHandle);
            }
            catch (Exception e)
            {
                throw new LoadError(Describe(e));
            }
            var dm = new DynamicMethod("fizz_call_" + method.Name, typeof(object), new[] { typeof(FissionContext) }, typeof(Loader).Module, true);
            var il = dm.GetILGenerator();
            if (!method.IsStatic) il.Emit(OpCodes.Newobj, type.GetConstructor(Type.EmptyTypes));
            if (method.GetParameters().Length == 1) il.Emit(OpCodes.Ldarg_0);
            il.Emit(method.IsStatic || type.IsValueType ? OpCodes.Call : OpCodes.Callvirt, method);
            if (method.ReturnType == typeof(void)) il.Emit(OpCodes.Ldnull);
            else if (method.ReturnType.IsValueType) il.Emit(OpCodes.Box, method.ReturnType);
            il.Emit(OpCodes.Ret);
            var call = (Handler)dm.CreateDelegate(typeof(Handler));
            if (!typeof(Task).IsAssignableFrom(method.ReturnType)) return call;
            // async functions: wait for the task and answer its result.
            return context =>
            {
                var task = (Task)call(context);
                if (task == null) return null;
                try
                {
                    task.Wait();
                }
                catch (AggregateException e)
                {
                    if (e.InnerExceptions.Count == 1) ExceptionDispatchRethrow(e.InnerExceptions[0]);
                    throw;
                }
                var result = task.GetType().GetProperty("Result");
                if (result == null || result.PropertyType.Name == "VoidTaskResult") return null;
                return result.GetValue(task, null);
            };
        }

        private static void ExceptionDispatchRethrow(Exception e)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e).Throw();
        }

        /// <summary>"file.cs:12: ExceptionType: message", the file and line being the innermost
        /// frame in the function's own code (the build maps its paths relative to the package).</summary>
        public static string Describe(Exception e)
        {
            while ((e is TypeInitializationException || e is TargetInvocationException) && e.InnerException != null)
                e = e.InnerException;
            var where = Location(e);
            return (where == null ? "" : where + ": ") + e.GetType().Name + ": " + e.Message;
        }

        private static string Location(Exception e)
        {
            var trace = new StackTrace(e, true);
            var frames = trace.GetFrames();
            if (frames == null) return null;
            foreach (var frame in frames)
            {
                var file = frame.GetFileName();
                // The package's files carry relative paths (build.sh's -pathmap); the runtime's own
                // and the class library's are absolute or absent.
                if (string.IsNullOrEmpty(file) || Path.IsPathRooted(file)) continue;
                if (file.StartsWith("./")) file = file.Substring(2);
                return file + ":" + frame.GetFileLineNumber();
            }
            return null;
        }
    }
}
