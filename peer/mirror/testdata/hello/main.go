// Command hello is the entry point of the containerd test's image: it
// proves the container ran from the layers the mirror served.
package main

import "fmt"

func main() { fmt.Println("hello from a p2pd layer") }
