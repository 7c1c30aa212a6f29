// SPDX-License-Identifier: MIT OR Apache-2.0
// keel's own test contracts for the Set leverage-module suite: an exchange that sells an exact
// input on one Uniswap v3 pool (from @uniswap/v3-core's published bytecode) for whoever calls
// it, and the adapter Set's IntegrationRegistry names, which tells a module how to call it.
pragma solidity 0.8.28;

interface IV3Pool {
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
}

interface IERC20Min {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// Sells an exact input on one pool for the caller, who must have approved this contract; the
/// output goes to `to`. No price limit: the swap runs until the input is spent.
contract SetV3Exchange {
    uint160 internal constant MIN_SQRT_RATIO = 4295128739;
    uint160 internal constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;
    address private payer;

    /// The minimum (fifth argument) is not enforced here: the module checks what it received
    /// ("Slippage too high").
    function swapExactInput(address pool, address tokenIn, address tokenOut, uint256 amountIn, uint256, address to)
        external
        returns (uint256 out)
    {
        bool zeroForOne = tokenIn < tokenOut;
        payer = msg.sender;
        (int256 a0, int256 a1) = IV3Pool(pool).swap(
            to, zeroForOne, int256(amountIn), zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1, abi.encode(tokenIn)
        );
        payer = address(0);
        out = uint256(-(zeroForOne ? a1 : a0));
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        address tokenIn = abi.decode(data, (address));
        uint256 owed = uint256(amount0Delta > 0 ? amount0Delta : amount1Delta);
        require(IERC20Min(tokenIn).transferFrom(payer, msg.sender, owed), "exchange: payment failed");
    }
}

/// Set's `IExchangeAdapter` for `SetV3Exchange` on one pool.
contract SetV3ExchangeAdapter {
    address public immutable exchange;
    address public immutable pool;

    constructor(address exchange_, address pool_) {
        exchange = exchange_;
        pool = pool_;
    }

    function getSpender() external view returns (address) {
        return exchange;
    }

    function getTradeCalldata(
        address sourceToken,
        address destinationToken,
        address destinationAddress,
        uint256 sourceQuantity,
        uint256 minDestinationQuantity,
        bytes calldata
    ) external view returns (address, uint256, bytes memory) {
        bytes memory call = abi.encodeWithSelector(
            SetV3Exchange.swapExactInput.selector,
            pool,
            sourceToken,
            destinationToken,
            sourceQuantity,
            minDestinationQuantity,
            destinationAddress
        );
        return (exchange, 0, call);
    }
}
