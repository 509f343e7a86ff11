module composedotenv

go 1.19
