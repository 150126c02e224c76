// A small, strict JSON reader and writer (RFC 8259). Mono's profile here has no JSON library
// (and there is no NuGet), and both the runtime and functions need one.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace Fission.DotNetCore.Api
{
    public static class FizzJson
    {
        private const int MaxDepth = 128;

        /// <summary>Objects become Dictionary&lt;string, object&gt; (insertion order kept), arrays
        /// List&lt;object&gt;, integers long (double when out of range or fractional). Throws
        /// FormatException on anything that is not exactly one JSON value.</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new FormatException("no text");
            var reader = new Reader(text);
            reader.SkipSpace();
            var value = reader.Value(0);
            reader.SkipSpace();
            if (reader.Pos != text.Length) throw reader.Fail("unexpected data after the value");
            return value;
        }

        /// <summary>Parses `text` into a T: objects by their public settable properties (names
        /// matched ignoring case), lists, arrays, dictionaries with string keys, numbers, strings,
        /// enums; Fission's GetSettings&lt;T&gt; used Json.NET's DeserializeObject&lt;T&gt; this way.</summary>
        public static T Deserialize<T>(string text)
        {
            return (T)Bind(Parse(text), typeof(T), 0);
        }

        private static object Bind(object value, Type type, int depth)
        {
            if (depth > MaxDepth) throw new FormatException("nested too deeply");
            if (type == typeof(object)) return value;
            var underlying = Nullable.GetUnderlyingType(type);
            if (value == null)
            {
                if (!type.IsValueType || underlying != null) return null;
                throw new FormatException("null for a " + type.Name);
            }
            if (underlying != null) type = underlying;
            if (type == typeof(string)) return value as string ?? Convert.ToString(value, CultureInfo.InvariantCulture);
            if (type.IsEnum) return Enum.Parse(type, Convert.ToString(value, CultureInfo.InvariantCulture), true);
            if (type.IsPrimitive || type == typeof(decimal)) return Convert.ChangeType(value, type, CultureInfo.InvariantCulture);
            if (type == typeof(DateTime)) return DateTime.Parse((string)value, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
            if (type == typeof(Guid)) return new Guid((string)value);
            var list = value as List<object>;
            if (type.IsArray)
            {
                if (list == null) throw new FormatException("expected an array for " + type.Name);
                var element = type.GetElementType();
                var array = Array.CreateInstance(element, list.Count);
                for (var i = 0; i < list.Count; i++) array.SetValue(Bind(list[i], element, depth + 1), i);
                return array;
            }
            var obj = value as Dictionary<string, object>;
            if (type.IsGenericType && typeof(IDictionary).IsAssignableFrom(type))
            {
                if (obj == null) throw new FormatException("expected an object for " + type.Name);
                var args = type.GetGenericArguments();
                var dict = (IDictionary)Activator.CreateInstance(type);
                foreach (var kv in obj) dict[kv.Key] = Bind(kv.Value, args[1], depth + 1);
                return dict;
            }
            if (type.IsGenericType && typeof(IList).IsAssignableFrom(type))
            {
                if (list == null) throw new FormatException("expected an array for " + type.Name);
                var element = type.GetGenericArguments()[0];
                var result = (IList)Activator.CreateInstance(type);
                foreach (var item in list) result.Add(Bind(item, element, depth + 1));
                return result;
            }
            if (obj == null) throw new FormatException("expected an object for " + type.Name);
            var instance = Activator.CreateInstance(type);
            foreach (var kv in obj)
            {
                var prop = type.GetProperty(kv.Key, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
                if (prop != null && prop.CanWrite)
                {
                    prop.SetValue(instance, Bind(kv.Value, prop.PropertyType, depth + 1), null);
                    continue;
                }
                var field = type.GetField(kv.Key, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
                if (field != null) field.SetValue(instance, Bind(kv.Value, field.FieldType, depth + 1));
            }
            return instance;
        }

        /// <summary>Writes null, strings, numbers, booleans, dictionaries (keys as strings),
        /// enumerables, and other objects by their public properties. Throws
        /// NotSupportedException for values JSON cannot hold (delegates, pointers, cycles).</summary>
        public static string Serialize(object value)
        {
            var sb = new StringBuilder();
            Write(sb, value, 0);
            return sb.ToString();
        }

        private static void Write(StringBuilder sb, object value, int depth)
        {
            if (depth > MaxDepth) throw new NotSupportedException("value nests deeper than " + MaxDepth + " levels (a cycle?)");
            if (value == null || value is DBNull) { sb.Append("null"); return; }
            var s = value as string;
            if (s != null) { WriteString(sb, s); return; }
            if (value is bool) { sb.Append((bool)value ? "true" : "false"); return; }
            if (value is char) { WriteString(sb, value.ToString()); return; }
            if (value is double || value is float)
            {
                var d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                if (double.IsNaN(d) || double.IsInfinity(d)) { sb.Append("null"); return; }
                sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            if (value is int || value is long || value is short || value is byte || value is sbyte ||
                value is uint || value is ulong || value is ushort || value is decimal)
            {
                sb.Append(Convert.ToString(value, CultureInfo.InvariantCulture));
                return;
            }
            if (value is Enum) { WriteString(sb, value.ToString()); return; }
            if (value is DateTime) { WriteString(sb, ((DateTime)value).ToString("o", CultureInfo.InvariantCulture)); return; }
            if (value is Guid) { WriteString(sb, value.ToString()); return; }
            if (value is Delegate || value is IntPtr || value is UIntPtr || value is Type ||
                value is MemberInfo || value is System.IO.Stream)
            {
                throw new NotSupportedException("a " + value.GetType().Name + " cannot be sent as JSON");
            }
            var dict = value as IDictionary;
            if (dict != null)
            {
                sb.Append('{');
                var first = true;
                foreach (DictionaryEntry entry in dict)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, Convert.ToString(entry.Key, CultureInfo.InvariantCulture));
                    sb.Append(':');
                    Write(sb, entry.Value, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var list = value as IEnumerable;
            if (list != null)
            {
                sb.Append('[');
                var first = true;
                foreach (var item in list)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    Write(sb, item, depth + 1);
                }
                sb.Append(']');
                return;
            }
            var type = value.GetType();
            if (type.IsPrimitive || type.IsPointer) throw new NotSupportedException("a " + type.Name + " cannot be sent as JSON");
            sb.Append('{');
            var any = false;
            foreach (var prop in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (!prop.CanRead || prop.GetIndexParameters().Length > 0) continue;
                if (any) sb.Append(',');
                any = true;
                WriteString(sb, prop.Name);
                sb.Append(':');
                Write(sb, prop.GetValue(value, null), depth + 1);
            }
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                if (any) sb.Append(',');
                any = true;
                WriteString(sb, field.Name);
                sb.Append(':');
                Write(sb, field.GetValue(value), depth + 1);
            }
            sb.Append('}');
        }

        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029') sb.Append("\\u").Append(((int)c).ToString("x4"));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        private sealed class Reader
        {
            private readonly string _s;
            public int Pos;

            public Reader(string s) { _s = s; }

            public FormatException Fail(string what)
            {
                return new FormatException(what + " at position " + Pos);
            }

            public void SkipSpace()
            {
                while (Pos < _s.Length)
                {
                    var c = _s[Pos];
                    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') Pos++;
                    else break;
                }
            }

            public object Value(int depth)
            {
                if (depth > MaxDepth) throw Fail("nested too deeply");
                if (Pos >= _s.Length) throw Fail("unexpected end");
                var c = _s[Pos];
                switch (c)
                {
                    case '{': return Obj(depth);
                    case '[': return Arr(depth);
                    case '"': return Str();
                    case 't': Word("true"); return true;
                    case 'f': Word("false"); return false;
                    case 'n': Word("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return Num();
                        throw Fail("unexpected character");
                }
            }

            private void Word(string w)
            {
                if (string.CompareOrdinal(_s, Pos, w, 0, w.Length) != 0) throw Fail("invalid literal");
                Pos += w.Length;
            }

            private Dictionary<string, object> Obj(int depth)
            {
                var d = new Dictionary<string, object>();
                Pos++;
                SkipSpace();
                if (Pos < _s.Length && _s[Pos] == '}') { Pos++; return d; }
                for (;;)
                {
                    SkipSpace();
                    if (Pos >= _s.Length || _s[Pos] != '"') throw Fail("expected a string key");
                    var key = Str();
                    SkipSpace();
                    if (Pos >= _s.Length || _s[Pos] != ':') throw Fail("expected ':'");
                    Pos++;
                    SkipSpace();
                    d[key] = Value(depth + 1); // the last of repeated keys wins, as in JavaScript
                    SkipSpace();
                    if (Pos >= _s.Length) throw Fail("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == '}') { Pos++; return d; }
                    throw Fail("expected ',' or '}'");
                }
            }

            private List<object> Arr(int depth)
            {
                var l = new List<object>();
                Pos++;
                SkipSpace();
                if (Pos < _s.Length && _s[Pos] == ']') { Pos++; return l; }
                for (;;)
                {
                    SkipSpace();
                    l.Add(Value(depth + 1));
                    SkipSpace();
                    if (Pos >= _s.Length) throw Fail("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == ']') { Pos++; return l; }
                    throw Fail("expected ',' or ']'");
                }
            }

            private string Str()
            {
                Pos++;
                StringBuilder sb = null;
                var start = Pos;
                for (;;)
                {
                    if (Pos >= _s.Length) throw Fail("unterminated string");
                    var c = _s[Pos];
                    if (c == '"')
                    {
                        string result;
                        if (sb == null) result = _s.Substring(start, Pos - start);
                        else { sb.Append(_s, start, Pos - start); result = sb.ToString(); }
                        Pos++;
                        return result;
                    }
                    if (c < 0x20) throw Fail("control character in string");
                    if (c != '\\') { Pos++; continue; }
                    if (sb == null) sb = new StringBuilder();
                    sb.Append(_s, start, Pos - start);
                    Pos++;
                    if (Pos >= _s.Length) throw Fail("unterminated escape");
                    var e = _s[Pos++];
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u':
                            if (Pos + 4 > _s.Length) throw Fail("short \\u escape");
                            int code;
                            if (!int.TryParse(_s.Substring(Pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out code))
                                throw Fail("invalid \\u escape");
                            sb.Append((char)code);
                            Pos += 4;
                            break;
                        default: throw Fail("invalid escape");
                    }
                    start = Pos;
                }
            }

            private object Num()
            {
                var start = Pos;
                if (_s[Pos] == '-') Pos++;
                if (Pos >= _s.Length) throw Fail("invalid number");
                if (_s[Pos] == '0') Pos++;
                else if (_s[Pos] >= '1' && _s[Pos] <= '9') Digits();
                else throw Fail("invalid number");
                var integral = true;
                if (Pos < _s.Length && _s[Pos] == '.')
                {
                    integral = false;
                    Pos++;
                    if (!Digits()) throw Fail("invalid number");
                }
                if (Pos < _s.Length && (_s[Pos] == 'e' || _s[Pos] == 'E'))
                {
                    integral = false;
                    Pos++;
                    if (Pos < _s.Length && (_s[Pos] == '+' || _s[Pos] == '-')) Pos++;
                    if (!Digits()) throw Fail("invalid number");
                }
                var text = _s.Substring(start, Pos - start);
                long l;
                if (integral && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l)) return l;
                return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            }

            private bool Digits()
            {
                var start = Pos;
                while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                return Pos > start;
            }
        }
    }
}
