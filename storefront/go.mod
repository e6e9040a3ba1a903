module storefront

go 1.26
