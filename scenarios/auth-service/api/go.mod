module example.com/auth-service/api

go 1.19
