module example.com/picker-wheel/api

go 1.19
