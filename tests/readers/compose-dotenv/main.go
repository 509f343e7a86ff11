// Reads one .env file the way docker compose reads a service's `env_file`
// (compose-go's dotenv.ParseWithFormat, interpolating from the process environment, as
// compose does from the project environment) and prints it as JSON, so the Python tests
// can compare what compose would hand a container with what ScaiVault exported.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"composedotenv/dotenv"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-dotenv FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	vars := map[string]string{}
	if err := dotenv.ParseWithFormat(f, os.Args[1], vars, os.LookupEnv, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(vars); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
