public static class Greeter
{
    public static string Greet(string who)
    {
        return "hello " + who + " from a second file";
    }
}
