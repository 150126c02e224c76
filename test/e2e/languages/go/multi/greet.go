package main

func greet(who string) string {
	return "hello " + who + " from a second file"
}
